// auditstamp appliance console: checks the event page's proof bundle in this browser, with
// WebCrypto only (no library, nothing fetched). It reads the bundle embedded in the page
// (<script type="application/json" id="proof-bundle">, the answer of GET /v1/events/{index})
// and runs five steps, each shown as a list item that turns ok or failed:
//   1. the leaf bytes decode (the version-1 layout of src/chain/event.rs) and say the event
//      shown: index, agency, auditor, action, subject, data_sha256;
//   2. SHA-256(0x00 || leaf) is the leaf hash;
//   3. the inclusion proof leads from that leaf hash at its index to a root of the tree
//      size (RFC 9162 section 2.1.3.2; node = SHA-256(0x01 || left || right));
//   4. the checkpoint is a signed note (C2SP signed-note, tlog-checkpoint) whose size and
//      root are the ones computed;
//   5. a signature line of the checkpoint is the verifier key's, and its Ed25519 signature
//      over the note text verifies.
// The verdict (#verdict) says exactly "verified", or names the first step that failed.
// "Check again" (#recheck) runs the steps again from the embedded JSON as it is now.
'use strict';

(() => {
  const STEPS = ['leaf', 'leaf hash', 'inclusion proof', 'checkpoint', 'signature'];
  const SIG_PREFIX = '\u2014 ';
  const utf8 = new TextEncoder();

  /** A step's failure: what is wrong, for people. */
  class Failure extends Error {}

  /** A failure because this browser cannot run the check (not a wrong proof). */
  class Unsupported extends Error {}

  function fail(message) {
    throw new Failure(message);
  }

  /** Standard base64 with padding, as the appliance writes it; anything else fails. */
  function base64(text, what) {
    if (typeof text !== 'string' || text.length % 4 !== 0 ||
        !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
      fail(`${what} is not base64`);
    }
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function same(a, b) {
    return a.length === b.length && a.every((x, i) => x === b[i]);
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  }

  /** A non-negative integer of the bundle as a BigInt, or a failure naming it. */
  function count(value, what) {
    if (!Number.isSafeInteger(value) || value < 0) fail(`${what} is not a non-negative integer`);
    return BigInt(value);
  }

  /** The fields of version-1 leaf bytes (see src/chain/event.rs, encode_leaf). */
  function decodeLeaf(bytes) {
    let at = 0;
    const take = (n) => {
      if (bytes.length - at < n) fail('the leaf bytes are truncated');
      const part = bytes.subarray(at, at + n);
      at += n;
      return part;
    };
    const view = (part) => new DataView(part.buffer, part.byteOffset, part.byteLength);
    const text = new TextDecoder('utf-8', { fatal: true });
    const string = (name) => {
      const len = view(take(4)).getUint32(0);
      try {
        return text.decode(take(len));
      } catch (e) {
        if (e instanceof Failure) throw e;
        fail(`the leaf's ${name} is not UTF-8`);
      }
    };
    if (take(1)[0] !== 1) fail('the leaf is not a version-1 event');
    const index = view(take(8)).getBigUint64(0);
    const receivedAtMs = view(take(8)).getBigUint64(0);
    const salt = take(16);
    const occurredAtNs = view(take(8)).getBigInt64(0);
    const dataSha256 = hex(take(32));
    const agency = string('agency');
    const auditor = string('auditor');
    const action = string('action');
    const subject = string('subject');
    const details = string('details');
    if (at !== bytes.length) fail('bytes follow the last field of the leaf');
    return {
      index, receivedAtMs, salt, occurredAtNs, data_sha256: dataSha256,
      agency, auditor, action, subject, details,
    };
  }

  /** RFC 9162 section 2.1.3.2: the root the proof leads to from `leaf` at `index`. */
  async function rootFromInclusion(path, index, size, leaf) {
    if (index >= size) fail(`index ${index} is not below the tree size ${size}`);
    let fn = index;
    let sn = size - 1n;
    let r = leaf;
    const node = (l, rr) => sha256(concat(Uint8Array.of(1), l, rr));
    for (const p of path) {
      if (sn === 0n) fail('the inclusion proof is too long for the tree size');
      if ((fn & 1n) === 1n || fn === sn) {
        r = await node(p, r);
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        r = await node(r, p);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) fail('the inclusion proof is too short for the tree size');
    return r;
  }

  const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
  const BAD_NAME = /[\s+\u0000-\u001f\u007f-\u009f]/u;

  /** A C2SP signed note: the signed text (through the newline before the blank line)
   *  and its signature lines. */
  function parseNote(note) {
    if (typeof note !== 'string') fail('the bundle has no checkpoint');
    if (CONTROL.test(note)) fail('the checkpoint holds a control character');
    const split = note.lastIndexOf('\n\n');
    if (split < 0) fail('the checkpoint has no blank line before its signatures');
    const text = note.slice(0, split + 1);
    const sigs = note.slice(split + 2);
    if (!sigs.endsWith('\n')) fail('the checkpoint does not end in a newline');
    const signatures = sigs.slice(0, -1).split('\n').map((line) => {
      if (!line.startsWith(SIG_PREFIX)) fail("a signature line does not start with '\u2014 '");
      const rest = line.slice(SIG_PREFIX.length);
      const space = rest.indexOf(' ');
      if (space < 0) fail('a signature line has no signature');
      const name = rest.slice(0, space);
      if (name === '' || BAD_NAME.test(name)) fail('a signature line has an invalid key name');
      const raw = base64(rest.slice(space + 1), 'a signature');
      if (raw.length < 5) fail('a signature is too short');
      return { name, id: raw.subarray(0, 4), signature: raw.subarray(4) };
    });
    return { text, signatures };
  }

  /** A checkpoint body: origin, size, root, extension lines. */
  function parseCheckpoint(body) {
    if (!body.endsWith('\n')) fail('the checkpoint body does not end in a newline');
    const lines = body.slice(0, -1).split('\n');
    const [origin, size, root, ...extensions] = lines;
    if (!origin) fail('the checkpoint has no origin line');
    if (size === undefined || !/^(0|[1-9][0-9]*)$/.test(size)) {
      fail('the checkpoint size line is not a decimal number');
    }
    if (root === undefined) fail('the checkpoint has no root hash line');
    const rootBytes = base64(root, "the checkpoint's root hash");
    if (rootBytes.length !== 32) fail("the checkpoint's root hash is not 32 bytes");
    if (extensions.some((e) => e === '')) fail('the checkpoint has an empty extension line');
    return { origin, size: BigInt(size), root: rootBytes };
  }

  /** A note verifier key `name+hexid+base64(0x01 || key)`, its id checked. */
  async function parseVerifierKey(text) {
    if (typeof text !== 'string') fail('the bundle has no verifier key');
    const first = text.indexOf('+');
    const second = first < 0 ? -1 : text.indexOf('+', first + 1);
    if (second < 0) fail('the verifier key is not name+id+key');
    const name = text.slice(0, first);
    const idHex = text.slice(first + 1, second);
    if (name === '' || BAD_NAME.test(name)) fail("the verifier key's name is invalid");
    if (!/^[0-9a-f]{8}$/i.test(idHex)) fail("the verifier key's id is not 8 hex digits");
    const key = base64(text.slice(second + 1), 'the verifier key');
    if (key.length !== 33 || key[0] !== 1) fail('the verifier key is not an Ed25519 key');
    const digest = await sha256(concat(utf8.encode(name), Uint8Array.of(0x0a), key));
    if (hex(digest.subarray(0, 4)) !== idHex.toLowerCase()) {
      fail("the verifier key's id does not match its key");
    }
    return { name, id: digest.subarray(0, 4), publicKey: key.subarray(1) };
  }

  async function ed25519Verify(publicKey, signature, message) {
    let key;
    try {
      key = await crypto.subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
    } catch (e) {
      if (e && e.name === 'NotSupportedError') {
        throw new Unsupported("this browser's WebCrypto has no Ed25519, so the signature cannot be checked here");
      }
      fail(`the verifier key is not a usable Ed25519 key (${e && e.name})`);
    }
    return crypto.subtle.verify({ name: 'Ed25519' }, key, signature, message);
  }

  /** The event as the page shows it (the elements with data-field in #event). */
  function shownEvent() {
    const shown = {};
    for (const el of document.querySelectorAll('#event [data-field]')) {
      shown[el.dataset.field] = el.textContent;
    }
    return shown;
  }

  /** Every step in order; each returns its detail or throws. */
  function steps(bundleText) {
    const s = {};
    return [
      async () => {
        try {
          s.bundle = JSON.parse(bundleText);
        } catch (e) {
          fail('the embedded proof bundle is not JSON');
        }
        const b = s.bundle;
        if (!b || typeof b !== 'object' || !b.event || typeof b.event !== 'object') {
          fail('the embedded proof bundle has no event');
        }
        s.leaf = base64(b.leaf, 'the leaf');
        const leaf = decodeLeaf(s.leaf);
        s.index = leaf.index;
        const claimed = { ...b.event, index: String(b.event.index) };
        const shown = shownEvent();
        for (const field of ['index', 'agency', 'auditor', 'action', 'subject', 'data_sha256']) {
          const value = String(leaf[field]);
          if (claimed[field] !== value) {
            fail(`the leaf says ${field} ${JSON.stringify(value)}, the bundle's event ${JSON.stringify(claimed[field])}`);
          }
          if (field in shown && shown[field] !== value) {
            fail(`the leaf says ${field} ${JSON.stringify(value)}, the page shows ${JSON.stringify(shown[field])}`);
          }
        }
        return `event ${leaf.index}: ${leaf.action} by ${leaf.auditor} of ${leaf.agency}`;
      },
      async () => {
        s.leafHash = await sha256(concat(Uint8Array.of(0), s.leaf));
        const claimed = s.bundle.leaf_hash;
        if (hex(s.leafHash) !== claimed) {
          fail(`the leaf hashes to ${hex(s.leafHash)}, the bundle says ${claimed}`);
        }
        return hex(s.leafHash);
      },
      async () => {
        const list = s.bundle.inclusion_proof;
        if (!Array.isArray(list)) fail('the bundle has no inclusion proof');
        const path = list.map((h, i) => {
          const bytes = base64(h, `inclusion_proof[${i}]`);
          if (bytes.length !== 32) fail(`inclusion_proof[${i}] is not 32 bytes`);
          return bytes;
        });
        s.size = count(s.bundle.tree_size, 'the tree size');
        s.root = await rootFromInclusion(path, s.index, s.size, s.leafHash);
        return `${path.length} hashes lead to root ${hex(s.root)} of tree size ${s.size}`;
      },
      async () => {
        s.note = parseNote(s.bundle.checkpoint);
        s.checkpoint = parseCheckpoint(s.note.text);
        if (s.checkpoint.size !== s.size) {
          fail(`the checkpoint's size is ${s.checkpoint.size}, the proof's tree size ${s.size}`);
        }
        if (!same(s.checkpoint.root, s.root)) {
          fail(`the checkpoint's root is ${hex(s.checkpoint.root)}, the inclusion proof leads to ${hex(s.root)}: the proof or the checkpoint is not the appliance's`);
        }
        return `${s.checkpoint.origin}, size ${s.checkpoint.size}`;
      },
      async () => {
        const key = await parseVerifierKey(s.bundle.verifier_key);
        const shown = document.getElementById('verifier-key');
        if (shown) shown.textContent = s.bundle.verifier_key;
        if (key.name !== s.checkpoint.origin) {
          fail(`the verifier key is named ${JSON.stringify(key.name)}, the checkpoint's origin is ${JSON.stringify(s.checkpoint.origin)}`);
        }
        const line = s.note.signatures.find((g) => g.name === key.name && same(g.id, key.id));
        if (!line) fail(`the checkpoint has no signature line of ${key.name}+${hex(key.id)}`);
        if (line.signature.length !== 64) fail('the signature is not 64 bytes (Ed25519)');
        const ok = await ed25519Verify(key.publicKey, line.signature, utf8.encode(s.note.text));
        if (!ok) fail(`the Ed25519 signature of ${key.name}+${hex(key.id)} does not verify`);
        return `signed by ${key.name}+${hex(key.id)}`;
      },
    ];
  }

  let run = 0;

  async function check() {
    const mine = ++run;
    const verdict = document.getElementById('verdict');
    const items = STEPS.map((_, i) => document.getElementById(`step-${i + 1}`));
    const show = (li, cls, detail) => {
      li.classList.remove('ok', 'bad');
      if (cls) li.classList.add(cls);
      const d = li.querySelector('.detail');
      if (d) d.textContent = detail ? ` \u2014 ${detail}` : '';
    };
    items.forEach((li) => show(li, null, ''));
    verdict.className = 'verdict pending';
    verdict.textContent = 'checking\u2026';
    const bundle = document.getElementById('proof-bundle');
    const all = steps(bundle ? bundle.textContent : '');
    for (let i = 0; i < all.length; i++) {
      let detail;
      try {
        detail = await all[i]();
      } catch (e) {
        if (mine !== run) return;
        const known = e instanceof Failure || e instanceof Unsupported;
        const why = known ? e.message : `unexpected error: ${e}`;
        show(items[i], 'bad', why);
        for (const li of items.slice(i + 1)) show(li, null, 'not checked');
        verdict.className = 'verdict bad';
        verdict.textContent = e instanceof Unsupported
          ? `not verified: ${why}`
          : `failed at step ${i + 1} (${STEPS[i]}): ${why}`;
        return;
      }
      if (mine !== run) return;
      show(items[i], 'ok', detail);
    }
    verdict.className = 'verdict ok';
    verdict.textContent = 'verified';
  }

  const again = document.getElementById('recheck');
  if (again) again.addEventListener('click', () => { check(); });
  check();
})();
