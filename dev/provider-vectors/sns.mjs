// Regenerates the "sdk-checked recipe" Amazon SNS vectors in crates/signature/tests/sns/
// (sdk-notification-v2.json, sdk-subscription-confirmation.json) and re-checks the published
// vectors there (published-*.json) with AWS's own validator.
//
// What it does:
//   1. Makes a 2048-bit RSA key with node-forge from a fixed seed (so a rerun writes the same
//      bytes) and a self-signed certificate for CN=sns.amazonaws.com, valid
//      2026-01-01T00:00:00Z .. 2036-01-01T00:00:00Z.
//   2. Signs, with node:crypto and AWS's documented string to sign
//      (https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html):
//        - a Notification with Subject, SignatureVersion 2 (RSA-SHA256);
//        - a SubscriptionConfirmation, SignatureVersion 1 (RSA-SHA1);
//      both with SigningCertURL
//      https://sns.us-east-1.amazonaws.com/SimpleNotificationService-spillwaytest.pem.
//   3. Runs `sns-validator` (the npm package of github.com/aws/aws-js-sns-message-validator)
//      with require('https').get stubbed to serve the PEM for each SigningCertURL (no network):
//      each vector must be accepted, and a copy with one byte of Message changed rejected.
//      The script stops if anything disagrees. Spillway's own code is never used.
//   4. Checks every published-*.json in the output directory with the same node:crypto recipe
//      and with sns-validator (read-only; those files are transcribed from public repositories,
//      see their "origin").
//
// Run (Node 20+; sns-validator and node-forge are not in package.json, so install them on the side):
//   mkdir -p /tmp/sns-sdk && (cd /tmp/sns-sdk && npm init -y && npm install sns-validator@0.3.5 node-forge@1.4.3)
//   cd dev/provider-vectors && SNS_SDK_DIR=/tmp/sns-sdk node sns.mjs
// or `npm install --no-save sns-validator@0.3.5 node-forge@1.4.3` here and plain `node sns.mjs`.
// Output goes to ../../crates/signature/tests/sns/ relative to this file (override: SNS_OUT=dir).

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.resolve(process.env.SNS_OUT || path.join(here, '../../crates/signature/tests/sns'));
const sdkDir = path.resolve(process.env.SNS_SDK_DIR || here);
const requireSdk = createRequire(path.join(sdkDir, 'package.json'));

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}

function version(pkg) {
  const p = requireSdk.resolve(`${pkg}/package.json`);
  const { name, version: v } = JSON.parse(fs.readFileSync(p, 'utf8'));
  check(name === pkg, `package.json of ${pkg}`);
  return `${pkg}@${v}`;
}

// --- stub the certificate download before sns-validator is loaded ---------------------------
const https = requireSdk('https');
const served = new Map(); // SigningCertURL -> PEM
https.get = (url, cb) => {
  const req = new EventEmitter();
  const res = new EventEmitter();
  const pem = served.get(String(url));
  res.statusCode = pem === undefined ? 404 : 200;
  process.nextTick(() => {
    cb(res);
    if (pem !== undefined) res.emit('data', Buffer.from(pem, 'utf8'));
    res.emit('end');
  });
  return req;
};
const MessageValidator = requireSdk('sns-validator');
const forge = requireSdk('node-forge');

function snsValidate(body) {
  return new Promise((resolve) => {
    new MessageValidator().validate(body, (err) => resolve(err ? err.message : 'ok'));
  });
}

// --- AWS's string to sign ---------------------------------------------------------------------
const NOTIFICATION_KEYS = ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type'];
const CONFIRMATION_KEYS = ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type'];

function stringToSign(m) {
  const keys = m.Type === 'Notification' ? NOTIFICATION_KEYS : CONFIRMATION_KEYS;
  let s = '';
  for (const k of keys) {
    if (k === 'Subject' && (m.Subject === undefined || m.Subject === null)) continue;
    check(typeof m[k] === 'string', `${m.Type} has ${k}`);
    s += `${k}\n${m[k]}\n`;
  }
  return Buffer.from(s, 'utf8');
}

const ALG = { 1: 'RSA-SHA1', 2: 'RSA-SHA256' };

function recipeVerify(body, pem) {
  const m = JSON.parse(body);
  return crypto.verify(ALG[m.SignatureVersion], stringToSign(m), pem, Buffer.from(m.Signature, 'base64'));
}

// --- deterministic key and certificate ---------------------------------------------------------
function seededPrng(seed) {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return {
    getBytesSync(n) {
      while (pool.length < n) {
        const block = crypto.createHash('sha256').update(seed).update(String(counter++)).digest();
        pool = Buffer.concat([pool, block]);
      }
      const out = pool.subarray(0, n);
      pool = pool.subarray(n);
      return out.toString('binary');
    },
  };
}

const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001, prng: seededPrng('spillway sns sdk-checked vectors v1') });
const cert = forge.pki.createCertificate();
cert.publicKey = keys.publicKey;
cert.serialNumber = '5350494c4c574159'; // "SPILLWAY"
cert.validity.notBefore = new Date('2026-01-01T00:00:00Z');
cert.validity.notAfter = new Date('2036-01-01T00:00:00Z');
const name = [{ name: 'commonName', value: 'sns.amazonaws.com' }];
cert.setSubject(name);
cert.setIssuer(name);
cert.setExtensions([
  { name: 'basicConstraints', cA: false },
  { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
  { name: 'subjectAltName', altNames: [{ type: 2, value: 'sns.amazonaws.com' }] },
]);
cert.sign(keys.privateKey, forge.md.sha256.create());
const CERT_PEM = forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n');
const KEY_PEM = forge.pki.privateKeyToPem(keys.privateKey);
const CERT_URL = 'https://sns.us-east-1.amazonaws.com/SimpleNotificationService-spillwaytest.pem';
served.set(CERT_URL, CERT_PEM);

// --- bodies, laid out like SNS does ("Key" : value, two-space indent) --------------------------
// Non-ASCII is written as \uXXXX escapes (surrogate pairs above U+FFFF), as in real SNS bodies.
function jsonString(s) {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0'));
}
function snsBody(fields) {
  return '{\n' + fields.map(([k, v]) => `  ${JSON.stringify(k)} : ${jsonString(v)}`).join(',\n') + '\n}';
}

function signed(fieldsWithoutSig, signatureVersion) {
  const m = Object.fromEntries(fieldsWithoutSig);
  m.SignatureVersion = signatureVersion;
  const sig = crypto.sign(ALG[signatureVersion], stringToSign(m), KEY_PEM).toString('base64');
  return { m, sig };
}

const ACCOUNT = '123456789012';
const TOPIC = `arn:aws:sns:us-east-1:${ACCOUNT}:spillway-test`;
const versions = `${version('sns-validator')}, ${version('node-forge')}`;
const origin = (what) =>
  `sdk-checked recipe: ${what} signed with node:crypto following https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html ` +
  `by a self-signed CN=sns.amazonaws.com certificate (2026-01-01..2036-01-01, key from node-forge with a fixed seed); ` +
  `accepted by npm ${versions.split(', ')[0]} (aws/aws-js-sns-message-validator) with its certificate download stubbed, ` +
  `and a copy with one byte of Message changed rejected; made by dev/provider-vectors/sns.mjs with npm ${versions}`;

const vectors = [];

{
  const ts = '2026-03-01T12:00:00.000Z';
  const base = [
    ['Type', 'Notification'],
    ['MessageId', '5b0c1d2e-3f40-5a6b-8c9d-0e1f2a3b4c5d'],
    ['TopicArn', TOPIC],
    ['Subject', 'Spillway SDK vector'],
    ['Message', 'Line one with "quotes", a backslash \\ and a tab\t.\nLine two: caf\u00e9 \u{1F34C}'],
    ['Timestamp', ts],
  ];
  const { sig } = signed(base, '2');
  const body = snsBody([
    ...base,
    ['SignatureVersion', '2'],
    ['Signature', sig],
    ['SigningCertURL', CERT_URL],
    ['UnsubscribeURL', `https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=${TOPIC}:0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d`],
  ]);
  vectors.push({ file: 'sdk-notification-v2.json', body, ts, what: 'Notification with Subject, SignatureVersion 2 (RSA-SHA256),' });
}

{
  const ts = '2026-03-01T11:59:00.000Z';
  const token = crypto.createHash('sha512').update('spillway sns token').digest('hex');
  const base = [
    ['Type', 'SubscriptionConfirmation'],
    ['MessageId', '7c6d5e4f-3a2b-4c1d-9e8f-7a6b5c4d3e2f'],
    ['Token', token],
    ['TopicArn', TOPIC],
    ['Message', `You have chosen to subscribe to the topic ${TOPIC}.\nTo confirm the subscription, visit the SubscribeURL included in this message.`],
    ['SubscribeURL', `https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=${TOPIC}&Token=${token}`],
    ['Timestamp', ts],
  ];
  const { sig } = signed(base, '1');
  const body = snsBody([...base, ['SignatureVersion', '1'], ['Signature', sig], ['SigningCertURL', CERT_URL]]);
  vectors.push({ file: 'sdk-subscription-confirmation.json', body, ts, what: 'SubscriptionConfirmation, SignatureVersion 1 (RSA-SHA1),' });
}

/** The body with one byte of the Message value changed (first ASCII letter's case flipped). */
function tamper(body) {
  const start = body.indexOf('"Message" : "') + '"Message" : "'.length;
  check(start > 20, 'Message in body');
  let i = start;
  while (!/[A-Za-z]/.test(body[i])) i++;
  const c = body[i];
  const flipped = c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase();
  return body.slice(0, i) + flipped + body.slice(i + 1);
}

fs.mkdirSync(OUT, { recursive: true });
for (const v of vectors) {
  check(recipeVerify(v.body, CERT_PEM), `${v.file}: recipe verifies`);
  const accepted = await snsValidate(v.body);
  check(accepted === 'ok', `${v.file}: sns-validator accepts (${accepted})`);
  const t = tamper(v.body);
  check(t !== v.body && Buffer.byteLength(t) === Buffer.byteLength(v.body), `${v.file}: tampered copy differs by one byte`);
  check(!recipeVerify(t, CERT_PEM), `${v.file}: recipe rejects tampered copy`);
  const rejected = await snsValidate(t);
  check(rejected === 'The message signature is invalid.', `${v.file}: sns-validator rejects tampered copy (${rejected})`);
  const out = { origin: origin(v.what), body: v.body, certificate_pem: CERT_PEM, verify_at: v.ts };
  fs.writeFileSync(path.join(OUT, v.file), JSON.stringify(out, null, 2) + '\n');
  console.log(`${v.file}: written; sns-validator accepted it and rejected the one-byte tamper`);
}

// --- cross-check the published vectors (read-only) --------------------------------------------
for (const f of fs.readdirSync(OUT).filter((f) => f.startsWith('published-') && f.endsWith('.json')).sort()) {
  const v = JSON.parse(fs.readFileSync(path.join(OUT, f), 'utf8'));
  const m = JSON.parse(v.body);
  served.set(m.SigningCertURL, v.certificate_pem);
  const recipe = recipeVerify(v.body, v.certificate_pem);
  check(recipe, `${f}: recipe verifies`);
  const sdk = await snsValidate(v.body);
  // sns-validator 0.3.5 signs UnsubscribeConfirmation with the Notification key list (no Token),
  // so it rejects genuine UnsubscribeConfirmation messages; everything else must pass.
  if (m.Type === 'UnsubscribeConfirmation') {
    console.log(`${f}: recipe ok; sns-validator says "${sdk}" (known: it leaves Token out for UnsubscribeConfirmation)`);
  } else {
    check(sdk === 'ok', `${f}: sns-validator accepts (${sdk})`);
    console.log(`${f}: recipe ok; sns-validator ok`);
  }
}
