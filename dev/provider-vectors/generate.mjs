// Regenerates crates/providers/tests/vectors/<preset>.json and ORIGINS.md.
//
// Every vector is, in order of preference:
//   published  - a provider's own worked example (docs page or official SDK test), transcribed;
//   sdk        - a request signed by the provider's official SDK;
//   recipe     - signed here with node:crypto (tweetnacl for Ed25519) following the provider's
//                docs; "accepted by ..." in the origin when the provider's SDK, which can only
//                verify, was run on it and accepted it.
// Each vector is also re-signed with the docs recipe below and the script stops if the
// recipe, the SDK and the published value disagree. Spillway's own code is never used.
//
// Run: cd dev/provider-vectors && npm ci && node generate.mjs

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import Stripe from 'stripe';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import { Webhook as SvixWebhook } from 'svix';
import { sign as octokitSign, verify as octokitVerify } from '@octokit/webhooks-methods';
import twilio from 'twilio';
import { Signature as HubSpotSignature } from '@hubspot/api-client';
import { isValidSlackRequest } from '@slack/bolt';
import { WorkOS } from '@workos-inc/node';
import { encodeSignatureHeader, isValidSignature as sanityIsValid } from '@sanity/webhook';
import { verifyKey as discordVerifyKey } from 'discord-interactions';
import { EventWebhook as SendGridEventWebhook } from '@sendgrid/eventwebhook';
import { WebhooksHelper as SquareWebhooksHelper } from 'square';
import { NodeRuntime as PaddleNodeRuntime, WebhooksValidator as PaddleValidator } from '@paddle/paddle-node-sdk';
import Razorpay from 'razorpay';
import Mux from '@mux/mux-node';
import { LinearWebhookClient } from '@linear/sdk/webhooks';
import nacl from 'tweetnacl';
import * as gocardlessWebhooks from 'gocardless-nodejs/webhooks';
import { Resend } from 'resend';
import OpenAI from 'openai';
import { validateWebhook as replicateValidate } from 'replicate';
import '@shopify/shopify-api/adapters/node';
import { shopifyApi, ApiVersion as ShopifyApiVersion, LogSeverity as ShopifyLogSeverity } from '@shopify/shopify-api';
import { getHmac as shopifyGetHmac } from '@shopify/shopify-api/test-helpers';
import { WebhooksManager as BoxWebhooksManager } from 'box-node-sdk/managers';
import { signWebhookPayload as notionSign, verifyWebhookSignature as notionVerify } from '@notionhq/client';
import { WebflowClient } from 'webflow-api';
import { AwsLambdaReceiver as ZoomLambdaReceiver } from '@zoom/rivet/meetings';
import { basicAuthValidator as chargebeeBasicAuth } from 'chargebee';

const require = createRequire(import.meta.url);
const coinbase = require('coinbase-commerce-node');
const { TelnyxWebhook } = require('telnyx/lib/webhooks');
const { verifyWebhookSignature: hookdeckVerify } = require('@hookdeck/sdk/webhooks');
const { verifyRequestSignature: customerIoVerify } = require('customerio-node');
// Segment's own sender: the Actions "Webhook" destination, which signs what Segment sends.
const segmentWebhook = require('@segment/action-destinations/dist/destinations/webhook').default;

const here = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.resolve(here, '../../crates/providers/tests/vectors');

// === helpers ===

/** The exact installed version of an npm package, for origins. */
function version(pkg) {
  const { name, version: v } = JSON.parse(fs.readFileSync(path.join(here, 'node_modules', pkg, 'package.json'), 'utf8'));
  check(name === pkg, `package.json of ${pkg}`);
  return `${pkg}@${v}`;
}

const hmac = (alg, key, ...parts) => {
  const h = crypto.createHmac(alg, key);
  for (const p of parts) h.update(p);
  return h.digest();
};
const sha1 = (key, ...p) => hmac('sha1', key, ...p);
const sha256 = (key, ...p) => hmac('sha256', key, ...p);
const sha512 = (key, ...p) => hmac('sha512', key, ...p);
const hex = (b) => Buffer.from(b).toString('hex');
const b64 = (b) => Buffer.from(b).toString('base64');
const b64url = (b) => Buffer.from(b).toString('base64url'); // unpadded
const json = (value) => JSON.stringify(value);

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}
function same(actual, expected, what) {
  check(actual === expected, `${what}: got ${actual}, expected ${expected}`);
}

/** The body with one byte changed: the first letter of its first JSON string value that starts
 * with a lowercase letter, upper-cased (still valid JSON, same keys). A verify function that
 * accepted the body must reject this one. */
function tampered(body) {
  const i = body.search(/:"[a-z]/) + 2;
  check(i >= 2, 'a letter to change');
  return body.slice(0, i) + body[i].toUpperCase() + body.slice(i + 1);
}

/** Lower-cased header names to values, as Node's http module hands them to an SDK. */
const headerMap = (headers) => Object.fromEntries(headers.map(([k, val]) => [k.toLowerCase(), val]));

/** Runs `fn` with Date.now() and new Date() fixed at `seconds`, for SDKs that check freshness. */
async function at(seconds, fn) {
  const Real = Date;
  const ms = seconds * 1000;
  class Frozen extends Real {
    constructor(...args) {
      if (args.length === 0) super(ms);
      else super(...args);
    }
    static now() {
      return ms;
    }
  }
  globalThis.Date = Frozen;
  try {
    return await fn();
  } finally {
    globalThis.Date = Real;
  }
}

// Fixed times: 2023-11-14T22:13:20Z.
const T = 1700000000;
const T_MS = '1700000000000';
const T_RFC = '2023-11-14T22:13:20Z';
const hookUrl = (preset) => `https://hooks.example.com/v1/hooks/${preset}`;
const JSON_CT = ['Content-Type', 'application/json'];
const FORM_CT = ['Content-Type', 'application/x-www-form-urlencoded'];

// Fixed key pairs. Ed25519 from a fixed seed; the P-256 key is stored here (ECDSA signatures
// are randomised, so SendGrid's recipe vector changes on every run; it verifies all the same).
const ED25519_SEED = crypto.createHash('sha256').update('spillway provider vectors ed25519 seed').digest();
const ed = nacl.sign.keyPair.fromSeed(new Uint8Array(ED25519_SEED));
const edSign = (message) => Buffer.from(nacl.sign.detached(new Uint8Array(Buffer.from(message)), ed.secretKey));
const P256_PRIVATE_PEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgw1mvwCgAOVkefFJB
HBgWGwIBWjLVrIJlcOW0DuekD3ShRANCAASiLLtLISYEl8KW8BtbC8hAoN7wjIJi
ya7ibIKYHZAVp4TmaZkrRKYxE54yOrLPENWuAfMNBqj7rQdRSSjIg/wy
-----END PRIVATE KEY-----
`;
const p256 = crypto.createPrivateKey(P256_PRIVATE_PEM);
const P256_PUBLIC_B64 = crypto.createPublicKey(p256).export({ type: 'spki', format: 'der' }).toString('base64');

// === the presets, as the catalogue defines them (for the expectations) ===
//
// dedupe / event: {h: header} | {j: JSON pointer} | 'signed' (the signed id header) | null.
const PRESETS = {
  // developer
  github: { docs: 'https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries', dedupe: { h: 'x-github-delivery' }, event: { h: 'x-github-event' } },
  gitlab: { docs: 'https://docs.gitlab.com/user/project/integrations/webhooks/#secret-token', dedupe: { h: 'idempotency-key' }, event: { h: 'x-gitlab-event' } },
  gitea: { docs: 'https://docs.gitea.com/usage/webhooks', dedupe: { h: 'x-gitea-delivery' }, event: { h: 'x-gitea-event' } },
  bitbucket: { docs: 'https://support.atlassian.com/bitbucket-cloud/docs/manage-webhooks/', dedupe: { h: 'x-request-uuid' }, event: { h: 'x-event-key' } },
  'bitbucket-server': { docs: 'https://confluence.atlassian.com/bitbucketserver/event-payload-938025882.html', dedupe: { h: 'x-request-id' }, event: { h: 'x-event-key' } },
  jira: { docs: 'https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks', dedupe: { h: 'x-atlassian-webhook-identifier' }, event: { j: '/webhookEvent' } },
  circleci: { docs: 'https://circleci.com/docs/webhooks/', dedupe: { j: '/id' }, event: { h: 'circleci-event-type' } },
  sentry: { docs: 'https://docs.sentry.io/organization/integrations/integration-platform/webhooks/', dedupe: { h: 'request-id' }, event: { h: 'sentry-hook-resource' } },
  linear: { docs: 'https://linear.app/developers/webhooks#securing-webhooks', dedupe: { h: 'linear-delivery' }, event: { h: 'linear-event' } },
  pagerduty: { docs: 'https://developer.pagerduty.com/docs/webhooks/webhook-signatures/', dedupe: { h: 'x-webhook-id' }, event: { j: '/event/event_type' } },
  vercel: { docs: 'https://vercel.com/docs/webhooks/webhooks-api#securing-webhooks', dedupe: { j: '/id' }, event: { j: '/type' } },
  launchdarkly: { docs: 'https://launchdarkly.com/docs/home/infrastructure/webhooks', dedupe: { j: '/_id' }, event: { j: '/kind' } },
  sanity: { docs: 'https://www.sanity.io/docs/webhooks', dedupe: { h: 'idempotency-key' }, event: { h: 'sanity-operation' } },
  webflow: { docs: 'https://developers.webflow.com/data/docs/working-with-webhooks#validating-request-signatures', dedupe: null, event: { j: '/triggerType' } },
  figma: { docs: 'https://developers.figma.com/docs/rest-api/webhooks-security', dedupe: null, event: { j: '/event_type' } },
  trello: { docs: 'https://developer.atlassian.com/cloud/trello/guides/rest-api/webhooks/#webhook-signatures', dedupe: { j: '/action/id' }, event: { j: '/action/type' } },
  asana: { docs: 'https://developers.asana.com/docs/webhooks-guide', dedupe: null, event: null },
  clickup: { docs: 'https://developer.clickup.com/docs/webhooksignature', dedupe: null, event: { j: '/event' } },
  airtable: { docs: 'https://airtable.com/developers/web/api/webhooks-overview', dedupe: null, event: null },
  notion: { docs: 'https://developers.notion.com/reference/webhooks', dedupe: { j: '/id' }, event: { j: '/type' } },
  onfleet: { docs: 'https://docs.onfleet.com/reference/secrets', dedupe: null, event: { j: '/triggerName' } },
  'frame-io': { docs: 'https://developer.frame.io/docs/automations-webhooks/webhooks-overview', dedupe: null, event: { j: '/type' } },
  attio: { docs: 'https://docs.attio.com/rest-api/guides/webhooks', dedupe: null, event: { j: '/events/0/event_type' } },
  'cal-com': { docs: 'https://cal.com/docs/developing/guides/automation/webhooks', dedupe: null, event: { j: '/triggerEvent' } },
  hookdeck: { docs: 'https://hookdeck.com/docs/authentication', dedupe: { h: 'x-hookdeck-eventid' }, event: null },
  // commerce
  stripe: { docs: 'https://docs.stripe.com/webhooks#verify-manually', dedupe: { j: '/id' }, event: { j: '/type' } },
  shopify: { docs: 'https://shopify.dev/docs/apps/build/webhooks/subscribe/https', dedupe: { h: 'x-shopify-event-id' }, event: { h: 'x-shopify-topic' } },
  square: { docs: 'https://developer.squareup.com/docs/webhooks/step3validate', dedupe: { j: '/event_id' }, event: { j: '/type' } },
  paddle: { docs: 'https://developer.paddle.com/webhooks/signature-verification', dedupe: { j: '/event_id' }, event: { j: '/event_type' } },
  'coinbase-commerce': { docs: 'https://docs.cdp.coinbase.com/commerce/api-architecture/webhooks-security', dedupe: { j: '/event/id' }, event: { j: '/event/type' } },
  chargebee: { docs: 'https://www.chargebee.com/docs/2.0/events_and_webhooks.html', dedupe: { j: '/id' }, event: { j: '/event_type' } },
  'lemon-squeezy': { docs: 'https://docs.lemonsqueezy.com/help/webhooks/signing-requests', dedupe: null, event: { h: 'x-event-name' } },
  gocardless: { docs: 'https://developer.gocardless.com/getting-started/staying-up-to-date-with-webhooks', dedupe: { j: '/meta/webhook_id' }, event: null },
  'checkout-com': { docs: 'https://www.checkout.com/docs/developer-resources/webhooks/manage-webhooks/receive-webhooks', dedupe: { j: '/id' }, event: { j: '/type' } },
  razorpay: { docs: 'https://razorpay.com/docs/webhooks/validate-test/', dedupe: { h: 'x-razorpay-event-id' }, event: { j: '/event' } },
  mollie: { docs: 'https://docs.mollie.com/reference/webhooks-new', dedupe: { j: '/id' }, event: { j: '/type' } },
  woocommerce: { docs: 'https://woocommerce.com/document/webhooks/', dedupe: { h: 'x-wc-webhook-delivery-id' }, event: { h: 'x-wc-webhook-topic' } },
  xero: { docs: 'https://developer.xero.com/documentation/guides/webhooks/configuring-your-server/', dedupe: null, event: null },
  quickbooks: { docs: 'https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks', dedupe: null, event: null },
  docusign: { docs: 'https://developers.docusign.com/platform/webhooks/connect/validate', dedupe: null, event: { j: '/event' } },
  box: { docs: 'https://developer.box.com/guides/webhooks/v2/signatures-v2/', dedupe: { j: '/id' }, event: { j: '/trigger' } },
  dropbox: { docs: 'https://www.dropbox.com/developers/reference/webhooks', dedupe: null, event: null },
  calendly: { docs: 'https://developer.calendly.com/api-docs/overview/webhooks/webhook-signatures', dedupe: null, event: { j: '/event' } },
  typeform: { docs: 'https://www.typeform.com/developers/webhooks/secure-your-webhooks/', dedupe: { j: '/event_id' }, event: { j: '/event_type' } },
  zendesk: { docs: 'https://developer.zendesk.com/documentation/webhooks/verifying/', dedupe: { j: '/id' }, event: { j: '/type' } },
  hubspot: { docs: 'https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests', dedupe: null, event: null },
  // messaging
  slack: { docs: 'https://api.slack.com/authentication/verifying-requests-from-slack', dedupe: { j: '/event_id' }, event: { j: '/type' } },
  discord: { docs: 'https://discord.com/developers/docs/interactions/overview#setting-up-an-endpoint', dedupe: { j: '/id' }, event: { j: '/type' } },
  zoom: { docs: 'https://developers.zoom.us/docs/api/webhooks/', dedupe: null, event: { j: '/event' } },
  twitch: { docs: 'https://dev.twitch.tv/docs/eventsub/handling-webhook-events/', dedupe: { signed: 'twitch-eventsub-message-id' }, event: { h: 'twitch-eventsub-subscription-type' } },
  meta: { docs: 'https://developers.facebook.com/docs/graph-api/webhooks/getting-started', dedupe: null, event: { j: '/object' } },
  whatsapp: { docs: 'https://developers.facebook.com/docs/whatsapp/cloud-api/guides/set-up-webhooks', dedupe: { j: '/entry/0/changes/0/value/messages/0/id' }, event: { j: '/entry/0/changes/0/field' } },
  instagram: { docs: 'https://developers.facebook.com/docs/instagram-platform/webhooks', dedupe: null, event: { j: '/entry/0/changes/0/field' } },
  twilio: { docs: 'https://www.twilio.com/docs/usage/webhooks/webhooks-security', dedupe: { h: 'i-twilio-idempotency-token' }, event: null },
  sendgrid: { docs: 'https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features', dedupe: null, event: null },
  mailgun: { docs: 'https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks', dedupe: { j: '/signature/token' }, event: { j: '/event-data/event' } },
  mandrill: { docs: 'https://mailchimp.com/developer/transactional/guides/track-respond-activity-webhooks/#authenticating-webhook-requests', dedupe: null, event: null },
  postmark: { docs: 'https://postmarkapp.com/developer/webhooks/webhooks-overview#protecting-your-webhook', dedupe: null, event: { j: '/RecordType' } },
  resend: { docs: 'https://resend.com/docs/dashboard/webhooks/verify-webhooks-requests', dedupe: 'standard', event: { j: '/type' } },
  intercom: { docs: 'https://developers.intercom.com/docs/webhooks/setting-up-webhooks#signed-notifications', dedupe: { j: '/id' }, event: { j: '/topic' } },
  segment: { docs: 'https://www.twilio.com/docs/segment/connections/destinations/catalog/actions-webhook', dedupe: { j: '/messageId' }, event: { j: '/type' } },
  'customer-io': { docs: 'https://docs.customer.io/api/webhooks/', dedupe: { j: '/event_id' }, event: { j: '/metric' } },
  nylas: { docs: 'https://developer.nylas.com/docs/v3/notifications/webhooks/', dedupe: { j: '/id' }, event: { j: '/type' } },
  telnyx: { docs: 'https://developers.telnyx.com/docs/development/sdk/node/webhooks', dedupe: { j: '/data/id' }, event: { j: '/data/event_type' } },
  // platforms
  'standard-webhooks': { docs: 'https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md', dedupe: 'standard', event: { j: '/type' } },
  'standard-webhooks-v1a': { docs: 'https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md#signature-scheme', dedupe: 'standard', event: { j: '/type' } },
  svix: { docs: 'https://docs.svix.com/receiving/verifying-payloads/how-manual', dedupe: 'standard', event: { j: '/type' } },
  clerk: { docs: 'https://clerk.com/docs/webhooks/verify-webhooks', dedupe: 'standard', event: { j: '/type' } },
  openai: { docs: 'https://platform.openai.com/docs/guides/webhooks', dedupe: 'standard', event: { j: '/type' } },
  replicate: { docs: 'https://replicate.com/docs/topics/webhooks/verify-webhook', dedupe: 'standard', event: null },
  mux: { docs: 'https://www.mux.com/docs/core/verify-webhook-signatures', dedupe: { j: '/id' }, event: { j: '/type' } },
  workos: { docs: 'https://workos.com/docs/events/data-syncing/webhooks', dedupe: { j: '/id' }, event: { j: '/event' } },
  persona: { docs: 'https://docs.withpersona.com/docs/webhooks-best-practices', dedupe: { j: '/data/id' }, event: { j: '/data/attributes/name' } },
  okta: { docs: 'https://developer.okta.com/docs/concepts/event-hooks/', dedupe: { j: '/eventId' }, event: { j: '/data/events/0/eventType' } },
  auth0: { docs: 'https://auth0.com/docs/customize/log-streams/custom-log-streams', dedupe: { j: '/log_id' }, event: { j: '/data/type' } },
  'microsoft-graph': { docs: 'https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks', dedupe: null, event: { j: '/value/0/changeType' } },
};

function header(headers, name) {
  const found = headers.filter(([k]) => k.toLowerCase() === name);
  check(found.length <= 1, `header ${name} sent once`);
  return found.length ? found[0][1] : null;
}

function pointer(body, ptr) {
  let value;
  try {
    value = JSON.parse(body);
  } catch {
    return null;
  }
  for (const raw of ptr.split('/').slice(1)) {
    const token = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (value === null || typeof value !== 'object' || !(token in value)) return null;
    value = value[token];
  }
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return null;
}

function keyOf(source, v) {
  if (source === null) return null;
  if (source === 'standard') return header(v.headers, 'webhook-id') ?? header(v.headers, 'svix-id');
  if (source.signed) return header(v.headers, source.signed);
  if (source.h) return header(v.headers, source.h);
  return pointer(v.body, source.j);
}

// === the recipes: each provider's docs, in node:crypto ===
//
// r.<preset>(v, extra) returns the header value(s) the provider sends for vector v.

const sortedForm = (body) =>
  [...new URLSearchParams(body)]
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, val]) => k + val)
    .join('');
const stripeLike = (secret, t, body) => `t=${t},v1=${hex(sha256(secret, `${t}.${body}`))}`;
const standard = (secret, id, t, body) =>
  `v1,${b64(sha256(Buffer.from(secret.replace(/^whsec_/, ''), 'base64'), `${id}.${t}.${body}`))}`;

const recipe = {
  github: (s, b) => `sha256=${hex(sha256(s, b))}`,
  gitea: (s, b) => hex(sha256(s, b)),
  bitbucket: (s, b) => `sha256=${hex(sha256(s, b))}`,
  jira: (s, b) => `sha256=${hex(sha256(s, b))}`,
  circleci: (s, b) => `v1=${hex(sha256(s, b))}`,
  hexBody: (s, b) => hex(sha256(s, b)),
  pagerduty: (s, b) => `v1=${hex(sha256(s, b))}`,
  vercel: (s, b) => hex(sha1(s, b)),
  sanity: (s, t, b) => `t=${t},v1=${b64url(sha256(s, `${t}.${b}`))}`,
  webflow: (s, t, b) => hex(sha256(s, `${t}:${b}`)),
  trello: (s, b, url) => b64(sha1(s, b + url)),
  airtable: (s, b) => `hmac-sha256=${hex(sha256(Buffer.from(s, 'base64'), b))}`,
  notion: (s, b) => `sha256=${hex(sha256(s, b))}`,
  onfleet: (s, b) => hex(sha512(Buffer.from(s, 'hex'), b)),
  v0: (s, t, b) => `v0=${hex(sha256(s, `v0:${t}:${b}`))}`,
  customerIo: (s, t, b) => hex(sha256(s, `v0:${t}:${b}`)),
  b64Body: (s, b) => b64(sha256(s, b)),
  stripeLike,
  workos: (s, t, b) => `t=${t}, v1=${hex(sha256(s, `${t}.${b}`))}`,
  square: (s, url, b) => b64(sha256(s, url + b)),
  paddle: (s, t, b) => `ts=${t};h1=${hex(sha256(s, `${t}:${b}`))}`,
  mollie: (s, b) => `sha256=${hex(sha256(s, b))}`,
  box: (s, t, b) => b64(sha256(s, b + t)),
  typeform: (s, b) => `sha256=${b64(sha256(s, b))}`,
  zendesk: (s, t, b) => b64(sha256(s, t + b)),
  hubspot: (s, method, url, b, t) => b64(sha256(s, method + url + b + t)),
  twitch: (s, id, t, b) => `sha256=${hex(sha256(s, id + t + b))}`,
  meta: (s, b) => `sha256=${hex(sha256(s, b))}`,
  urlForm: (s, url, b) => b64(sha1(s, url + sortedForm(b))),
  mailgun: (s, t, token) => hex(sha256(s, t + token)),
  intercom: (s, b) => `sha1=${hex(sha1(s, b))}`,
  segment: (s, b) => hex(sha1(s, b)),
  standard,
  discord: (t, b) => hex(edSign(t + b)),
  telnyx: (t, b) => b64(edSign(`${t}|${b}`)),
  sendgridVerify: (pubB64, t, b, sig) =>
    crypto.verify('sha256', Buffer.from(t + b), crypto.createPublicKey({ key: Buffer.from(pubB64, 'base64'), format: 'der', type: 'spki' }), Buffer.from(sig, 'base64')),
  basic: (s) => `Basic ${b64(s)}`,
};

// === the vectors ===

const vectors = new Map(Object.keys(PRESETS).map((p) => [p, []]));

function add(preset, { origin, secret, method = 'POST', url, headers, body, now = T }) {
  const def = PRESETS[preset];
  check(def, `unknown preset ${preset}`);
  const v = { preset, origin, secret, method, url: url ?? hookUrl(preset), headers, body, now };
  v.expect = { dedupe: keyOf(def.dedupe, v), event_type: keyOf(def.event, v) };
  vectors.get(preset).push(v);
  return v;
}

const published = (url) => `published: ${url}`;
const sdk = (pkg, fn) => `sdk: npm ${version(pkg)} ${fn}`;
const byRecipe = (preset) => `recipe: node crypto following ${PRESETS[preset].docs}`;
const accepted = (preset, pkg, fn, how = 'node crypto') =>
  `recipe: ${how} following ${PRESETS[preset].docs}, accepted by npm ${version(pkg)} ${fn}`;

// ---------------------------------------------------------------- developer

{
  // GitHub's worked example, plus the delivery headers GitHub sends with every request.
  const secret = "It's a Secret to Everybody";
  const body = 'Hello, World!';
  const sig = 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';
  same(recipe.github(secret, body), sig, 'github published');
  check(await octokitVerify(secret, body, sig), 'octokit verifies the published example');
  add('github', {
    origin: published('https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation'),
    secret,
    headers: [['Content-Type', 'text/plain'], ['X-GitHub-Delivery', '72d3162e-cc78-11e3-81ab-4c9367dc0958'], ['X-GitHub-Event', 'ping'], ['X-Hub-Signature-256', sig]],
    body,
  });

  const body2 = json({
    action: 'opened',
    issue: { id: 1987654321, number: 42, title: 'Webhook deliveries are retried twice', state: 'open', user: { login: 'octocat', id: 1 } },
    repository: { id: 123456789, name: 'spillway', full_name: 'example/spillway', private: false },
    sender: { login: 'octocat', id: 1 },
  });
  const secret2 = 'gh-webhook-secret-2f9c1a7e';
  const sig2 = await octokitSign(secret2, body2);
  same(sig2, recipe.github(secret2, body2), 'github sdk');
  add('github', {
    origin: sdk('@octokit/webhooks-methods', 'sign'),
    secret: secret2,
    headers: [
      JSON_CT,
      ['X-GitHub-Delivery', 'd8a3e2f0-82b1-11ee-9f3c-1a2b3c4d5e6f'],
      ['X-GitHub-Event', 'issues'],
      ['X-GitHub-Hook-ID', '447788990'],
      ['X-GitHub-Hook-Installation-Target-Type', 'repository'],
      ['X-GitHub-Hook-Installation-Target-ID', '123456789'],
      ['X-Hub-Signature-256', sig2],
    ],
    body: body2,
  });
}

{
  const secret = 'glwh-3b8f0c2d9e7a41f6';
  add('gitlab', {
    origin: `recipe: the secret token sent as it is, following ${PRESETS.gitlab.docs}`,
    secret,
    headers: [
      JSON_CT,
      ['X-Gitlab-Event', 'Push Hook'],
      ['X-Gitlab-Token', secret],
      ['X-Gitlab-Instance', 'https://gitlab.com'],
      ['X-Gitlab-Webhook-UUID', '5b3c9e4a-6f1d-4c2b-8a7e-0d9f1e2c3b4a'],
      ['X-Gitlab-Event-UUID', '9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b'],
      ['Idempotency-Key', 'f1e2d3c4-b5a6-4978-8877-665544332211'],
    ],
    body: json({
      object_kind: 'push',
      event_name: 'push',
      before: '95790bf891e76fee5e1747ab589903a6a1f80f22',
      after: 'da1560886d4f094c3e6c9ef40349f7d38b5d27d7',
      ref: 'refs/heads/main',
      user_username: 'jsmith',
      project_id: 15,
      project: { id: 15, name: 'spillway', path_with_namespace: 'example/spillway' },
      total_commits_count: 1,
    }),
  });
}

{
  const secret = 'gitea-hook-secret';
  const body = json({
    ref: 'refs/heads/main',
    before: '28e1879d029cb852e4844d9c718537df08844e03',
    after: 'bffeb74224043ba2feb48d137756c8a9331c449a',
    compare_url: 'https://gitea.example.com/example/spillway/compare/28e1879d029c...bffeb7422404',
    commits: [{ id: 'bffeb74224043ba2feb48d137756c8a9331c449a', message: 'Add vectors\n', url: 'https://gitea.example.com/example/spillway/commit/bffeb74224043ba2feb48d137756c8a9331c449a' }],
    repository: { id: 1, name: 'spillway', full_name: 'example/spillway' },
    pusher: { id: 1, login: 'gitea' },
    sender: { id: 1, login: 'gitea' },
  });
  add('gitea', {
    origin: byRecipe('gitea'),
    secret,
    headers: [JSON_CT, ['X-Gitea-Delivery', 'f6266f16-1bf3-46a5-9ea4-602e06ead473'], ['X-Gitea-Event', 'push'], ['X-Gitea-Signature', recipe.gitea(secret, body)]],
    body,
  });
}

{
  const secret = 'bitbucket-cloud-secret';
  const body = json({
    push: { changes: [{ new: { type: 'branch', name: 'main', target: { hash: '709d658dc5b6d6afcd46049c2f332ee3f515a67d' } }, created: false, closed: false }] },
    repository: { type: 'repository', full_name: 'example/spillway', uuid: '{b3f0b4f4-0a16-4b68-9a1c-1f3a35f0b0a1}' },
    actor: { type: 'user', display_name: 'Ada Lovelace', uuid: '{1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b}' },
  });
  add('bitbucket', {
    origin: byRecipe('bitbucket'),
    secret,
    headers: [
      JSON_CT,
      ['X-Event-Key', 'repo:push'],
      ['X-Hook-UUID', 'a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d'],
      ['X-Request-UUID', 'e3b0c442-98fc-4c14-9afb-f4c8996fb924'],
      ['X-Attempt-Number', '1'],
      ['X-Hub-Signature', recipe.bitbucket(secret, body)],
    ],
    body,
  });
}

{
  const secret = 'bitbucket-dc-secret';
  const body = json({
    eventKey: 'repo:refs_changed',
    date: '2023-11-14T22:13:20+0000',
    actor: { name: 'admin', emailAddress: 'admin@example.com', id: 1, displayName: 'Administrator', slug: 'admin', type: 'NORMAL' },
    repository: { slug: 'spillway', id: 84, name: 'spillway', project: { key: 'PRJ', id: 84, name: 'Project' } },
    changes: [{ ref: { id: 'refs/heads/main', displayId: 'main', type: 'BRANCH' }, refId: 'refs/heads/main', fromHash: 'ecddabb624f6f5ba43816f5926e580a5f680a932', toHash: '178864a7d521b6f5e720b386b2c2b0ef8563e0dc', type: 'UPDATE' }],
  });
  add('bitbucket-server', {
    origin: byRecipe('bitbucket-server'),
    secret,
    headers: [JSON_CT, ['X-Event-Key', 'repo:refs_changed'], ['X-Request-Id', 'c0a8f5b2-7e1d-4f3a-9b6c-2d8e4f1a3b5c'], ['X-Hub-Signature', recipe.bitbucket(secret, body)]],
    body,
  });
}

{
  const secret = 'jira-admin-webhook-secret';
  const body = json({
    timestamp: 1700000000000,
    webhookEvent: 'jira:issue_created',
    issue_event_type_name: 'issue_created',
    user: { accountId: '5b10a2844c20165700ede21g', displayName: 'Mia Krystof' },
    issue: { id: '10002', key: 'SPW-3', fields: { summary: 'Retries arrive out of order', issuetype: { name: 'Bug' }, project: { key: 'SPW' } } },
  });
  add('jira', {
    origin: byRecipe('jira'),
    secret,
    headers: [JSON_CT, ['X-Atlassian-Webhook-Identifier', '1700000000000-10002-1'], ['X-Atlassian-Webhook-Retry', '0'], ['X-Hub-Signature', recipe.jira(secret, body)]],
    body,
  });
}

{
  const docs = 'https://circleci.com/docs/webhooks/#validate-webhooks';
  // The docs' header example: body "foo", secret "secret".
  const header = 'v1=773ba44693c7553d6ee20f61ea5d2757a9a4f4a44d2841ae4e95b52e4cd62db4';
  same(recipe.circleci('secret', 'foo'), header, 'circleci published header');
  add('circleci', {
    origin: published(docs),
    secret: 'secret',
    headers: [['Content-Type', 'text/plain'], ['circleci-event-type', 'workflow-completed'], ['circleci-signature', header]],
    body: 'foo',
  });
  // The docs' table of signatures (body, secret, signature), written as the header is.
  const sig = '9be2242094a9a8c00c64306f382a7f9d691de910b4a266f67bd314ef18ac49fa';
  same(recipe.circleci('hunter123', 'an-important-request-payload'), `v1=${sig}`, 'circleci published table');
  add('circleci', {
    origin: published(docs),
    secret: 'hunter123',
    headers: [['Content-Type', 'text/plain'], ['circleci-event-type', 'job-completed'], ['circleci-signature', `v1=${sig}`]],
    body: 'an-important-request-payload',
  });
  const secret = 'circleci-webhook-token';
  const body = json({
    type: 'workflow-completed',
    id: '3888f21b-eaa7-38e3-8f3d-75a63bba8895',
    happened_at: '2023-11-14T22:13:20.000Z',
    webhook: { id: 'cf8c4fdd-0587-4da1-b4ca-4fb1d7fdd9c0', name: 'spillway' },
    workflow: { id: 'fda08377-fe7e-46b1-8992-3a7aaecac9c3', name: 'build-test-deploy', status: 'success', created_at: '2023-11-14T22:10:00.000Z', stopped_at: '2023-11-14T22:13:19.000Z' },
    pipeline: { id: '1285fe1d-d3a6-44fc-8886-8979558254c4', number: 130 },
    project: { id: '84996744-a854-4f5e-aea3-04e2851dc1d2', name: 'spillway', slug: 'github/example/spillway' },
  });
  add('circleci', {
    origin: byRecipe('circleci'),
    secret,
    headers: [JSON_CT, ['circleci-event-type', 'workflow-completed'], ['circleci-signature', recipe.circleci(secret, body)]],
    body,
  });
}

{
  const secret = '4c5a3b3e5f0d8f1e2a7c9b6d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f';
  const body = json({
    action: 'created',
    installation: { uuid: '7a485448-a9e2-4c85-8a3c-4f44175783c9' },
    data: { issue: { id: '1170820242', shortId: 'SPILLWAY-7', title: 'TimeoutError: broker did not answer', status: 'unresolved', project: { id: '1', slug: 'spillway' } } },
    actor: { type: 'application', id: 'sentry', name: 'Sentry' },
  });
  add('sentry', {
    origin: byRecipe('sentry'),
    secret,
    headers: [
      JSON_CT,
      ['Request-ID', '6b1f0c1e-2d3a-4b5c-8d7e-9f0a1b2c3d4e'],
      ['Sentry-Hook-Resource', 'issue'],
      ['Sentry-Hook-Timestamp', String(T)],
      ['Sentry-Hook-Signature', recipe.hexBody(secret, body)],
    ],
    body,
  });
}

{
  const secret = 'lin_wh_5Fj8kQ2mN7pR3sT6vW9yZ1bC4dE';
  const body = json({
    action: 'create',
    type: 'Issue',
    data: { id: '2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9', identifier: 'SPW-12', title: 'Dedupe keys for Linear', teamId: '72b2a2dc-6f4f-4423-9d34-24b5bd10634a', createdAt: '2023-11-14T22:13:19.000Z' },
    url: 'https://linear.app/example/issue/SPW-12/dedupe-keys-for-linear',
    createdAt: '2023-11-14T22:13:19.000Z',
    organizationId: '2a1b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d',
    webhookTimestamp: 1700000000000,
    webhookId: '000042e3-d123-4980-b49f-8e140eef9329',
  });
  const sig = recipe.hexBody(secret, body);
  await at(T, async () => check(new LinearWebhookClient(secret).verify(Buffer.from(body), sig), 'linear sdk accepts'));
  add('linear', {
    origin: accepted('linear', '@linear/sdk', 'LinearWebhookClient.verify'),
    secret,
    headers: [JSON_CT, ['Linear-Delivery', '234d1a4e-b617-4388-90fe-adc3633d6b72'], ['Linear-Event', 'Issue'], ['Linear-Signature', sig]],
    body,
  });
}

{
  // The signature test of PagerDuty's Go client (PagerDuty's GitHub org).
  const src = 'https://github.com/PagerDuty/go-pagerduty/blob/3df5eb4e62dcdf897d37106578d7be6ad54449dc/webhookv3/webhookv3_test.go';
  const secret = 'lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK';
  const body =
    '{"event":{"id":"01BWDWL3NYY7LUFPZCC28QUCMK","event_type":"incident.priority_updated","resource_type":"incident","occurred_at":"2021-04-26T17:36:27.458Z","agent":{"html_url":"https://acme.pagerduty.com/users/PLH1HKV","id":"PLH1HKV","self":"https://api.pagerduty.com/users/PLH1HKV","summary":"Tenex Engineer","type":"user_reference"},"client":null,"data":{"id":"PGR0VU2","type":"incident","self":"https://api.pagerduty.com/incidents/PGR0VU2","html_url":"https://acme.pagerduty.com/incidents/PGR0VU2","number":2,"status":"triggered","title":"A little bump in the road","service":{"html_url":"https://acme.pagerduty.com/services/PF9KMXH","id":"PF9KMXH","self":"https://api.pagerduty.com/services/PF9KMXH","summary":"API Service","type":"service_reference"},"assignees":[{"html_url":"https://acme.pagerduty.com/users/PTUXL6G","id":"PTUXL6G","self":"https://api.pagerduty.com/users/PTUXL6G","summary":"User 123","type":"user_reference"}],"escalation_policy":{"html_url":"https://acme.pagerduty.com/escalation_policies/PUS0KTE","id":"PUS0KTE","self":"https://api.pagerduty.com/escalation_policies/PUS0KTE","summary":"Default","type":"escalation_policy_reference"},"teams":[{"html_url":"https://acme.pagerduty.com/teams/PFCVPS0","id":"PFCVPS0","self":"https://api.pagerduty.com/teams/PFCVPS0","summary":"Engineering","type":"team_reference"}],"priority":{"html_url":"https://acme.pagerduty.com/account/incident_priorities","id":"PSO75BM","self":"https://api.pagerduty.com/priorities/PSO75BM","summary":"P1","type":"priority_reference"},"urgency":"high","conference_bridge":{"conference_number":1000,"conference_url":"https://example.com"},"resolve_reason":null}}}';
  const sig = 'v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd';
  same(recipe.pagerduty(secret, body), sig, 'pagerduty published');
  add('pagerduty', { origin: published(src), secret, headers: [JSON_CT, ['X-PagerDuty-Signature', sig]], body });
}

{
  const secret = 'pd-v3-subscription-secret-Jm3kX9';
  const body = json({
    event: {
      id: '01DEN2HNSHVKSSU4OKJG3M3NOG',
      event_type: 'incident.triggered',
      resource_type: 'incident',
      occurred_at: '2023-11-14T22:13:19.000Z',
      agent: null,
      client: null,
      data: { id: 'PGR0VU2', type: 'incident', self: 'https://api.pagerduty.com/incidents/PGR0VU2', html_url: 'https://acme.pagerduty.com/incidents/PGR0VU2', number: 2, status: 'triggered', title: 'Kafka producer lag above threshold', urgency: 'high' },
    },
  });
  add('pagerduty', {
    origin: byRecipe('pagerduty'),
    secret,
    headers: [JSON_CT, ['X-Webhook-Id', '36ae6b47-ae52-4e01-a2a6-5b66e3e2e4d3'], ['X-Webhook-Subscription', 'PSUB123'], ['X-PagerDuty-Signature', recipe.pagerduty(secret, body)]],
    body,
  });
}

{
  const secret = 'vercel-webhook-secret-K2m4';
  const body = json({
    id: 'uev_Kt3Z5dUq1pWZbMCnCeg7QNN9',
    type: 'deployment.created',
    createdAt: 1700000000000,
    region: 'iad1',
    payload: { team: { id: 'team_1a2b3c' }, user: { id: 'user_4d5e6f' }, deployment: { id: 'dpl_2euZBFqxEdDMDG7dgRJDsB5Cszd1', url: 'spillway-git-main-example.vercel.app', name: 'spillway' }, project: { id: 'prj_12HKQaOmR5t5Uy6vdcQsNIiZgHGB' }, target: 'production' },
  });
  add('vercel', {
    origin: byRecipe('vercel'),
    secret,
    headers: [JSON_CT, ['x-vercel-signature', recipe.vercel(secret, body)]],
    body,
  });
}

{
  const secret = 'ld-webhook-secret-7e1f';
  const body = json({
    _links: { canonical: { href: '/api/v2/flags/default/new-ingress', type: 'application/json' }, self: { href: '/api/v2/auditlog/655372a0d7a2b10f3e4e1c11', type: 'application/json' } },
    _id: '655372a0d7a2b10f3e4e1c11',
    kind: 'flag',
    date: 1700000000000,
    name: 'new-ingress',
    description: 'turned on the flag',
    shortDescription: '',
    member: { email: 'ada@example.com', firstName: 'Ada', lastName: 'Lovelace' },
    titleVerb: 'turned on the flag',
    accesses: [{ action: 'updateOn', resource: 'proj/default:env/production:flag/new-ingress' }],
  });
  add('launchdarkly', {
    origin: byRecipe('launchdarkly'),
    secret,
    headers: [JSON_CT, ['X-LD-Signature', recipe.hexBody(secret, body)]],
    body,
  });
}

{
  // The toolkit's own test vector.
  const header = 't=1633519811129,v1=tLa470fx7qkLLEcMOcEUFuBbRSkGujyskxrNXcoh0N0';
  const body = '{"_id":"resume"}';
  same(recipe.sanity('test', '1633519811129', body), header, 'sanity published');
  check(await sanityIsValid(body, header, 'test'), 'sanity toolkit accepts its test vector');
  add('sanity', {
    origin: published('https://github.com/sanity-io/webhook-toolkit/blob/main/test/signature.test.ts'),
    secret: 'test',
    headers: [JSON_CT, ['sanity-webhook-signature', header]],
    body,
    now: 1633519811,
  });
  const secret = 'sanity-hook-secret-p8Q2';
  const body2 = json({ _id: 'post-7f1c2a', _type: 'post', _rev: 'vR9gK1mZ0QbW3xY5', title: 'Shipping webhooks reliably', slug: { _type: 'slug', current: 'shipping-webhooks-reliably' } });
  const header2 = await encodeSignatureHeader(body2, Number(T_MS), secret);
  same(header2, recipe.sanity(secret, T_MS, body2), 'sanity sdk');
  add('sanity', {
    origin: sdk('@sanity/webhook', 'encodeSignatureHeader'),
    secret,
    headers: [
      JSON_CT,
      ['idempotency-key', 'idem_2b7c5e1f9a3d'],
      ['sanity-webhook-id', 'hmA4Kdr7m2qzXc1N'],
      ['sanity-operation', 'update'],
      ['sanity-document-id', 'post-7f1c2a'],
      ['sanity-project-id', '3do82whm'],
      ['sanity-dataset', 'production'],
      ['sanity-webhook-signature', header2],
    ],
    body: body2,
  });
}

{
  const secret = 'webflow-client-secret-9b1d';
  const body = json({
    triggerType: 'form_submission',
    payload: { name: 'Contact Us', siteId: '65427cf400e02b306eaa049c', data: { 'First Name': 'Ada', Email: 'ada@example.com' }, submittedAt: '2023-11-14T22:13:19.000Z', id: '6321a2ff5a4fcf2ee2b3fa4b', formId: '65429eadebe8a9f3a30f62d0' },
  });
  const headers = [JSON_CT, ['x-webflow-timestamp', T_MS], ['x-webflow-signature', recipe.webflow(secret, T_MS, body)]];
  const webflow = new WebflowClient({ accessToken: 'vectors' });
  check(await webflow.webhooks.verifySignature({ headers: headerMap(headers), body, secret }), 'webflow-api accepts');
  check(!(await webflow.webhooks.verifySignature({ headers: headerMap(headers), body: tampered(body), secret })), 'webflow-api rejects a changed body');
  add('webflow', {
    origin: accepted('webflow', 'webflow-api', 'client.webhooks.verifySignature'),
    secret,
    headers,
    body,
  });
}

{
  const secret = 'figma-passcode-3c9e7a';
  const body = json({
    event_type: 'FILE_UPDATE',
    file_key: 'zH4ELdn0Ni1WWCPyGsAJNm',
    file_name: 'Spillway dashboard',
    passcode: secret,
    protocol_version: '2',
    retries: 0,
    timestamp: '2023-11-14T22:13:20Z',
    webhook_id: '22',
  });
  add('figma', {
    origin: `recipe: the passcode sent in the body, following ${PRESETS.figma.docs}`,
    secret,
    headers: [JSON_CT],
    body,
  });
}

{
  const secret = 'trello-oauth-secret-0f3b8c2d1e';
  const url = hookUrl('trello');
  const body = json({
    action: {
      id: '6553f2a0c1d2e3f4a5b6c7d8',
      idMemberCreator: '5a1b2c3d4e5f6a7b8c9d0e1f',
      type: 'updateCard',
      date: '2023-11-14T22:13:20.000Z',
      data: { card: { id: '6553f0ffc1d2e3f4a5b6c001', name: 'Write provider vectors', idShort: 12 }, listAfter: { id: '6553f0aa', name: 'Done' }, listBefore: { id: '6553f0bb', name: 'Doing' } },
    },
    model: { id: '6553f000c1d2e3f4a5b6c000', name: 'Spillway' },
  });
  add('trello', {
    origin: byRecipe('trello'),
    secret,
    url,
    headers: [JSON_CT, ['X-Trello-Webhook', recipe.trello(secret, body, url)]],
    body,
  });
}

{
  // The X-Hook-Secret of Asana's documented handshake.
  const secret = 'b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81';
  const body = json({
    events: [
      {
        user: { gid: '1199998879210423', resource_type: 'user' },
        created_at: '2023-11-14T22:13:19.865Z',
        action: 'changed',
        resource: { gid: '1200150478217012', resource_type: 'task', resource_subtype: 'default_task' },
        parent: null,
        change: { field: 'completed', action: 'changed' },
      },
    ],
  });
  add('asana', {
    origin: byRecipe('asana'),
    secret,
    headers: [JSON_CT, ['X-Hook-Signature', recipe.hexBody(secret, body)]],
    body,
  });
}

{
  const secret = '0DCSJV7A8W2QWI0FM6H8XUUQXOLYG3F7A7LNV1YDZ7KVTN1BR6WLV3HN4WJK91KE';
  const body = json({
    event: 'taskCreated',
    history_items: [{ id: '2800763136717140857', type: 1, date: '1700000000000', field: 'status', parent_id: '162641062', data: { status_type: 'open' }, source: null, user: { id: 183, username: 'John', email: 'john@example.com' } }],
    task_id: '1vj37mc',
    webhook_id: '7fa3ec74-69a8-4530-a251-8a13730bd204',
  });
  add('clickup', {
    origin: byRecipe('clickup'),
    secret,
    headers: [JSON_CT, ['X-Signature', recipe.hexBody(secret, body)]],
    body,
  });
}

{
  const secret = b64(Buffer.from('airtable-mac-secret-32-bytes!!!!'));
  const body = json({ base: { id: 'appBTdRaH4VEqq8WL' }, webhook: { id: 'achWmhMnKE3qCDbd1' }, timestamp: '2023-11-14T22:13:20.000Z' });
  add('airtable', {
    origin: byRecipe('airtable'),
    secret,
    headers: [JSON_CT, ['X-Airtable-Content-MAC', recipe.airtable(secret, body)]],
    body,
  });
}

{
  const secret = 'secret_tMrlL1qK5vuQAh1b6cZGhFChZTSYJlce98V0pYn7yBl';
  const body = json({
    id: '367cba44-b6f3-4c92-81e7-6a2e9659efd4',
    timestamp: '2023-11-14T22:13:20.000Z',
    workspace_id: '13950b26-c203-4f3b-b97d-93ec06319565',
    workspace_name: 'Example',
    subscription_id: '29d75c0d-5546-4414-8459-7b7a92f1fc4b',
    integration_id: '0ef104cd-477e-4a47-a3d4-a1d3c3c1f8c2',
    type: 'page.content_updated',
    authors: [{ id: 'c7c11cca-1d73-471d-9b6e-bdef51470190', type: 'person' }],
    attempt_number: 1,
    entity: { id: '153104cd-477e-809d-8dc4-ff2d96ae3090', type: 'page' },
    data: { parent: { id: '13950b26-c203-4f3b-b97d-93ec06319565', type: 'space' }, updated_blocks: [{ id: '153104cd-477e-80ec-9f3b-d6e7b1d4a3e1', type: 'block' }] },
  });
  const sig = await notionSign({ body, verificationToken: secret });
  same(sig, recipe.notion(secret, body), 'notion sdk');
  check(await notionVerify({ body, signature: sig, verificationToken: secret }), '@notionhq/client accepts');
  check(!(await notionVerify({ body: tampered(body), signature: sig, verificationToken: secret })), '@notionhq/client rejects a changed body');
  add('notion', {
    origin: sdk('@notionhq/client', 'signWebhookPayload'),
    secret,
    headers: [JSON_CT, ['X-Notion-Signature', sig]],
    body,
  });
}

{
  const secret = 'f4b1c8d2e9a07b3c5d6e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
  const body = json({
    taskId: 'b3F~Pzl3wKJmCa1yZz2kT0Ek',
    time: 1700000000000,
    triggerId: 3,
    triggerName: 'taskCompleted',
    workerId: 'h*wSb*apKlDkUFnuLTtjPke7',
    adminId: null,
    data: { task: { id: 'b3F~Pzl3wKJmCa1yZz2kT0Ek', shortId: '8f3e2a1c', completionDetails: { success: true } } },
    actionContext: { type: 'WORKER', id: 'h*wSb*apKlDkUFnuLTtjPke7' },
  });
  add('onfleet', {
    origin: byRecipe('onfleet'),
    secret,
    headers: [JSON_CT, ['X-Onfleet-Signature', recipe.onfleet(secret, body)]],
    body,
  });
}

{
  const secret = 'frameio-signing-secret-QW9z';
  const body = json({
    type: 'asset.created',
    resource: { type: 'asset', id: '7e9d6f1a-3b2c-4d5e-8f90-1a2b3c4d5e6f' },
    account: { id: 'a1b2c3d4-0000-4000-8000-000000000001' },
    team: { id: 'b2c3d4e5-0000-4000-8000-000000000002' },
    user: { id: 'c3d4e5f6-0000-4000-8000-000000000003' },
    project: { id: 'd4e5f6a7-0000-4000-8000-000000000004' },
  });
  add('frame-io', {
    origin: byRecipe('frame-io'),
    secret,
    headers: [JSON_CT, ['X-Frameio-Request-Timestamp', String(T)], ['X-Frameio-Signature', recipe.v0(secret, T, body)]],
    body,
  });
}

{
  const secret = 'attio-webhook-secret-b7d1';
  const body = json({
    webhook_id: 'a8f1c2d3-4e5f-4a6b-8c7d-9e0f1a2b3c4d',
    events: [{ event_type: 'record.created', id: { workspace_id: '14beef7a-99f7-4534-a87e-70b564330a4c', object_id: '97052eb9-e65e-443f-a297-f2d9a4a7f795', record_id: 'bf071e1f-6035-429d-b874-d83ea64ea13b' }, actor: { type: 'workspace-member', id: '50cf242c-7fa3-4cad-87d0-75b1af71c57b' } }],
  });
  add('attio', {
    origin: byRecipe('attio'),
    secret,
    headers: [JSON_CT, ['Attio-Signature', recipe.hexBody(secret, body)]],
    body,
  });
}

{
  const secret = 'calcom-webhook-secret';
  const body = json({
    triggerEvent: 'BOOKING_CREATED',
    createdAt: '2023-11-14T22:13:20.000Z',
    payload: { type: '30min', title: '30 min between Ada and Grace', startTime: '2023-11-20T15:00:00Z', endTime: '2023-11-20T15:30:00Z', uid: 'bFJeNb2uX8ANpT3JL5EfXw', bookingId: 91, status: 'ACCEPTED', organizer: { name: 'Ada', email: 'ada@example.com', timeZone: 'Europe/London' }, attendees: [{ name: 'Grace', email: 'grace@example.com', timeZone: 'America/New_York' }] },
  });
  add('cal-com', {
    origin: byRecipe('cal-com'),
    secret,
    headers: [JSON_CT, ['X-Cal-Signature-256', recipe.hexBody(secret, body)]],
    body,
  });
}

{
  const secret = 'hookdeck-signing-secret-6Tq';
  const body = json({ id: 'evt_1OCxyzABCdef', object: 'event', type: 'customer.created', data: { object: { id: 'cus_P1a2b3', email: 'ada@example.com' } } });
  const headers = [
    JSON_CT,
    ['x-hookdeck-eventid', 'evt_wX7QvH2bF9kLmN3p'],
    ['x-hookdeck-source-name', 'stripe-production'],
    ['x-hookdeck-attempt-count', '1'],
    ['x-hookdeck-signature', recipe.b64Body(secret, body)],
  ];
  check((await hookdeckVerify({ headers: headerMap(headers), rawBody: body, signingSecret: secret })).isValidSignature, '@hookdeck/sdk accepts');
  check(!(await hookdeckVerify({ headers: headerMap(headers), rawBody: tampered(body), signingSecret: secret })).isValidSignature, '@hookdeck/sdk rejects a changed body');
  add('hookdeck', {
    origin: accepted('hookdeck', '@hookdeck/sdk', 'verifyWebhookSignature (@hookdeck/sdk/webhooks)'),
    secret,
    headers,
    body,
  });
}

// ---------------------------------------------------------------- commerce

{
  const secret = 'whsec_test_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH';
  const body = json({
    id: 'evt_3OCx8f2eZvKYlo2C1a2b3c4d',
    object: 'event',
    api_version: '2023-10-16',
    created: 1700000000,
    data: { object: { id: 'pi_3OCx8f2eZvKYlo2C1xYzAbCd', object: 'payment_intent', amount: 2000, currency: 'usd', status: 'succeeded' } },
    livemode: false,
    pending_webhooks: 1,
    request: { id: 'req_8f2eZvKYlo2C1x', idempotency_key: null },
    type: 'payment_intent.succeeded',
  });
  const stripe = new Stripe('sk_test_vectors');
  const header = stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp: T });
  same(header, recipe.stripeLike(secret, T, body), 'stripe sdk');
  add('stripe', {
    origin: sdk('stripe', 'stripe.webhooks.generateTestHeaderString'),
    secret,
    headers: [JSON_CT, ['Stripe-Signature', header]],
    body,
  });
}

{
  const secret = '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';
  const body = json({
    id: 5589920350330,
    admin_graphql_api_id: 'gid://shopify/Order/5589920350330',
    email: 'jon@example.com',
    created_at: '2023-11-14T17:13:20-05:00',
    currency: 'USD',
    total_price: '403.00',
    financial_status: 'paid',
    line_items: [{ id: 13735528448122, title: 'IPod Nano - 8GB', quantity: 1, price: '199.00', sku: 'IPOD2008PINK' }],
  });
  // Signed by the library's own test helper, then checked by the validator apps run on every
  // delivery (which also requires the topic, shop domain, API version and webhook id headers).
  const sig = shopifyGetHmac(body, secret);
  same(sig, recipe.b64Body(secret, body), 'shopify sdk');
  const headers = [
    JSON_CT,
    ['X-Shopify-Topic', 'orders/create'],
    ['X-Shopify-Hmac-Sha256', sig],
    ['X-Shopify-Shop-Domain', 'spillway-demo.myshopify.com'],
    ['X-Shopify-API-Version', '2023-10'],
    ['X-Shopify-Webhook-Id', 'b54557e4-bdd9-4b37-8a5f-bf7d70bcd043'],
    ['X-Shopify-Event-Id', '98880550-7158-44d4-b7cd-2c97c8a091b5'],
    ['X-Shopify-Triggered-At', '2023-11-14T22:13:19.713012452Z'],
  ];
  const shopify = shopifyApi({
    apiKey: 'vectors',
    apiSecretKey: secret,
    scopes: [],
    hostName: 'hooks.example.com',
    apiVersion: ShopifyApiVersion.October24, // the app's own API version; validate() does not compare it
    isEmbeddedApp: false,
    logger: { level: ShopifyLogSeverity.Error, log: () => {} },
  });
  const delivery = (raw) => ({ rawBody: raw, rawRequest: { method: 'POST', url: '/v1/hooks/shopify', headers: headerMap(headers) }, rawResponse: {} });
  const result = await shopify.webhooks.validate(delivery(body));
  check(result.valid && result.eventId === '98880550-7158-44d4-b7cd-2c97c8a091b5', `@shopify/shopify-api accepts: ${json(result)}`);
  check(!(await shopify.webhooks.validate(delivery(tampered(body)))).valid, '@shopify/shopify-api rejects a changed body');
  add('shopify', {
    origin: `${sdk('@shopify/shopify-api', 'getHmac (@shopify/shopify-api/test-helpers)')}, accepted by npm ${version('@shopify/shopify-api')} shopify.webhooks.validate`,
    secret,
    headers,
    body,
  });
}

{
  const src = 'https://github.com/square/square-nodejs-sdk/blob/c58c6e097af6717e5c728712f79f89f6cd9da12f/tests/integration/webhooks.test.ts';
  const cases = [
    {
      secret: 'Ibxx_5AKakO-3qeNVR61Dw',
      url: 'https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9',
      body: '{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification","event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f","created_at":"2022-07-13T20:30:59.037339943Z","data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}',
      sig: 'GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=',
    },
    { secret: 'signature-key', url: 'https://webhook.site/webhooks', body: '{"data":{"type":"webhooks","id":"fake_id"}}', sig: 'W3FlCNk5IA3ZQ2LHTWoajvzfaDu/OwY2tNHIHC3IUOA=' },
  ];
  for (const c of cases) {
    same(recipe.square(c.secret, c.url, c.body), c.sig, 'square published');
    check(
      await SquareWebhooksHelper.verifySignature({ requestBody: c.body, signatureHeader: c.sig, signatureKey: c.secret, notificationUrl: c.url }),
      'square sdk accepts its test vector',
    );
    add('square', {
      origin: published(src),
      secret: c.secret,
      url: c.url,
      headers: [JSON_CT, ['x-square-hmacsha256-signature', c.sig]],
      body: c.body,
    });
  }
}

{
  const src = 'https://github.com/PaddleHQ/paddle-node-sdk/blob/b8ee4b12741d88abe5a33f5c8a74735c9ac3653f/src/__tests__/notifications/webhooks-validator.node.test.ts';
  PaddleNodeRuntime.initialize(); // what new Paddle(apiKey) does in Node
  const validator = new PaddleValidator();
  const cases = [
    { body: '{"data": ["1", "2"]}', header: 'ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9' },
    {
      body: '{"data": "value"}',
      header: 'ts=1698796800;h1=28981e941fae76e53db32f3d2a83cb69db41476595e84e1970a1b5d98f62b261;h1=28981e941fae76e53db32f3d2a83cb69db41476595e84e1970a1b5d98f62b261;h2=RANDOM_HASH',
    },
  ];
  for (const c of cases) {
    same(recipe.paddle('VALID_SECRET', '1698796800', c.body), c.header.split(';').slice(0, 2).join(';'), 'paddle published');
    check(await at(1698796800, () => validator.isValidSignature(c.body, 'VALID_SECRET', c.header)), 'paddle sdk accepts its test vector');
    add('paddle', { origin: published(src), secret: 'VALID_SECRET', headers: [JSON_CT, ['Paddle-Signature', c.header]], body: c.body, now: 1698796800 });
  }
  const secret = 'pdl_ntfset_01hf8z3k2q7x9w4v6m5n3b2c1d_Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz2Xc';
  const body = json({
    event_id: 'evt_01hf8z9t2kq6c9w4v6m5n3b2c1',
    event_type: 'transaction.completed',
    occurred_at: '2023-11-14T22:13:19.482312Z',
    notification_id: 'ntf_01hf8z9t5rb3a9kx7c2w4v6m5n',
    data: { id: 'txn_01hf8z8w0x2k5c9v6m4n3b2c1d', status: 'completed', customer_id: 'ctm_01hf8z7y6x5w4v3u2t1s0r9q8p', currency_code: 'USD', origin: 'web', details: { totals: { subtotal: '2500', tax: '0', total: '2500' } } },
  });
  const header = recipe.paddle(secret, T, body);
  check(await at(T, () => validator.isValidSignature(body, secret, header)), 'paddle sdk accepts');
  add('paddle', {
    origin: accepted('paddle', '@paddle/paddle-node-sdk', 'WebhooksValidator.isValidSignature'),
    secret,
    headers: [JSON_CT, ['Paddle-Signature', header]],
    body,
  });
}

{
  const src = 'https://github.com/coinbase/coinbase-commerce-node/blob/d46c59684423b07d068e001ae8c5d58abb9cbbc1/test/testWebhook.spec.js';
  const secret = '30291a20-0bd1-4267-9b0f-e6e7b123c0bf';
  const body =
    '{"id":1,"scheduled_for":"2017-01-31T20:50:02Z","attempt_number":1,"event":{"id":"24934862-d980-46cb-9402-43c81b0cdba6","type":"charge:created","api_version":"2018-03-22","created_at":"2017-01-31T20:49:02Z","data":{"code":"66BEOV2A","name":"The Sovereign Individual","description":"Mastering the Transition to the Information Age","hosted_url":"https://commerce.coinbase.com/charges/66BEOV2A","created_at":"2017-01-31T20:49:02Z","expires_at":"2017-01-31T21:04:02Z","timeline":[{"time":"2017-01-31T20:49:02Z","status":"NEW"}],"metadata":{},"pricing_type":"no_price","payments":[],"addresses":{"bitcoin":"0000000000000000000000000000000000","ethereum":"0x0000000000000000000000000000000000000000","litecoin":"3000000000000000000000000000000000","bitcoincash":"bitcoincash:000000000000000000000000000000000000000000"}}}}';
  const sig = '8be7742c7d372f08a6a3224edadf18a22b65fa9e28f3f2de97376cdaa092590d';
  same(recipe.hexBody(secret, body), sig, 'coinbase published');
  coinbase.Webhook.verifySigHeader(body, sig, secret);
  add('coinbase-commerce', { origin: published(src), secret, headers: [JSON_CT, ['X-CC-Webhook-Signature', sig]], body });

  const secret2 = '5d1c9f0e-3b7a-4c2d-8e6f-1a2b3c4d5e6f';
  const body2 = json({
    id: 'f9d3b2c1-0a9b-4c8d-9e7f-6a5b4c3d2e1f',
    scheduled_for: '2023-11-14T22:13:20Z',
    attempt_number: 1,
    event: { id: '8f1e2d3c-4b5a-4697-8e8f-7a6b5c4d3e2f', resource: 'event', type: 'charge:confirmed', api_version: '2018-03-22', created_at: '2023-11-14T22:13:19Z', data: { code: 'QW8RT2YH', name: 'Spillway support plan', pricing_type: 'fixed_price', pricing: { local: { amount: '25.00', currency: 'USD' } } } },
  });
  const sig2 = coinbase.Webhook.computeSignature(body2, secret2);
  same(sig2, recipe.hexBody(secret2, body2), 'coinbase sdk');
  add('coinbase-commerce', { origin: sdk('coinbase-commerce-node', 'Webhook.computeSignature'), secret: secret2, headers: [JSON_CT, ['X-CC-Webhook-Signature', sig2]], body: body2 });
}

{
  const secret = 'spillway:cb-hook-pass-8Yq2';
  const body = json({
    id: 'ev_16BQ8BTZMz4aK3sF2',
    occurred_at: 1700000000,
    source: 'admin_console',
    object: 'event',
    api_version: 'v2',
    event_type: 'subscription_created',
    webhook_status: 'scheduled',
    content: { subscription: { id: '16BQ8BTZMz4aJ3sF1', customer_id: '16BQ8BTZMz4aJ3sF1', plan_id: 'basic', status: 'active' } },
  });
  // chargebee's validator parses the Authorization header and hands the user name and password
  // to the callback; the callback here compares them with the two halves of the secret.
  const headers = [JSON_CT, ['Authorization', recipe.basic(secret)]];
  const [user, pass] = [secret.slice(0, secret.indexOf(':')), secret.slice(secret.indexOf(':') + 1)];
  const validate = chargebeeBasicAuth((u, p) => u === user && p === pass);
  await validate(headerMap(headers));
  const wrong = recipe.basic(`${user}:${pass.slice(0, -1)}x`);
  check(await validate({ authorization: wrong }).then(() => false, (e) => e.name === 'WebhookAuthenticationError'), 'chargebee rejects another password');
  add('chargebee', {
    origin: accepted('chargebee', 'chargebee', 'basicAuthValidator', 'HTTP Basic credentials'),
    secret,
    headers,
    body,
  });
}

{
  const secret = 'lsq-signing-secret';
  const body = json({
    meta: { test_mode: true, event_name: 'order_created', custom_data: { customer_id: 25 }, webhook_id: 'f1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8' },
    data: { type: 'orders', id: '1', attributes: { store_id: 1, customer_id: 1, identifier: '104e18a2-d755-4d4b-80c4-a6c1dcbe1c10', order_number: 1, user_email: 'ada@example.com', currency: 'USD', total: 999, status: 'paid', created_at: '2023-11-14T22:13:19.000000Z' } },
  });
  add('lemon-squeezy', {
    origin: byRecipe('lemon-squeezy'),
    secret,
    headers: [JSON_CT, ['X-Event-Name', 'order_created'], ['X-Signature', recipe.hexBody(secret, body)]],
    body,
  });
}

{
  const src =
    'https://github.com/gocardless/gocardless-pro-python/blob/d5c83f375d8867d2980745ed1c510f264823d300/tests/webhooks_test.py (body: tests/fixtures/webhook_body.json, stripped)';
  const secret = 'ED7D658C-D8EB-4941-948B-3973214F2D49';
  const body =
    '{"events":[{"id":"EV00BD05S5VM2T","created_at":"2018-07-05T09:13:51.404Z","resource_type":"subscriptions","action":"created","links":{"subscription":"SB0003JJQ2MR06"},"details":{"origin":"api","cause":"subscription_created","description":"Subscription created via the API."},"metadata":{}},{"id":"EV00BD05TB8K63","created_at":"2018-07-05T09:13:56.893Z","resource_type":"mandates","action":"created","links":{"mandate":"MD000AMA19XGEC"},"details":{"origin":"api","cause":"mandate_created","description":"Mandate created via the API."},"metadata":{}}]}';
  const sig = '2693754819d3e32d7e8fcb13c729631f316c6de8dc1cf634d6527f1c07276e7e';
  same(recipe.hexBody(secret, body), sig, 'gocardless published');
  gocardlessWebhooks.parse(body, secret, sig);
  add('gocardless', { origin: published(src), secret, headers: [JSON_CT, ['Webhook-Signature', sig]], body });

  const secret2 = 'gc-endpoint-secret-Lk29Vb';
  const body2 = json({
    events: [
      { id: 'EV0123ABCD4567', created_at: '2023-11-14T22:13:19.120Z', resource_type: 'payments', action: 'confirmed', links: { payment: 'PM00ABC123DEF4' }, details: { origin: 'gocardless', cause: 'payment_confirmed', description: 'Payment was confirmed as collected' }, metadata: {} },
    ],
    meta: { webhook_id: 'WB0005XYZ7Q2RA' },
  });
  const sig2 = recipe.hexBody(secret2, body2);
  gocardlessWebhooks.parse(body2, secret2, sig2);
  add('gocardless', { origin: accepted('gocardless', 'gocardless-nodejs', 'webhooks.parse'), secret: secret2, headers: [JSON_CT, ['Webhook-Signature', sig2]], body: body2 });
}

{
  const secret = 'cko-signature-key-7f3e2d1c';
  const body = json({
    id: 'evt_az5sblvku4ge3dwpztvyizgcau',
    type: 'payment_approved',
    version: '1.0.33',
    created_on: '2023-11-14T22:13:20Z',
    data: { id: 'pay_mbabizu24mvu3mela5njyhpit4', action_id: 'act_mbabizu24mvu3mela5njyhpit4', amount: 6540, currency: 'GBP', approved: true, status: 'Authorized', reference: 'ORD-5023-4E89' },
    _links: { self: { href: 'https://api.sandbox.checkout.com/workflows/events/evt_az5sblvku4ge3dwpztvyizgcau' } },
  });
  add('checkout-com', {
    origin: byRecipe('checkout-com'),
    secret,
    headers: [JSON_CT, ['Cko-Signature', recipe.hexBody(secret, body)]],
    body,
  });
}

{
  const src = 'https://github.com/razorpay/razorpay-node/blob/9737ef17342b8a551f7af2413c8d24df559accc8/test/utils/razorpay-utils.spec.js';
  const body = '{"a":1,"b":2,"c":{"d":3}}';
  const sig = '2fe04e22977002e6c7cb553adab8b460cb9e2a4970d5953cb27a8472752e3bbc';
  same(recipe.hexBody('123456', body), sig, 'razorpay published');
  check(Razorpay.validateWebhookSignature(body, sig, '123456'), 'razorpay sdk accepts its test vector');
  add('razorpay', { origin: published(src), secret: '123456', headers: [JSON_CT, ['X-Razorpay-Event-Id', 'NdPlsNZZZ1ZGjY'], ['X-Razorpay-Signature', sig]], body });

  const secret = 'rzp-webhook-secret-Hs8a';
  const body2 = json({
    entity: 'event',
    account_id: 'acc_BFQ7uQEaa7j2z7',
    event: 'payment.captured',
    contains: ['payment'],
    payload: { payment: { entity: { id: 'pay_DESlfW9H8K9uqM', entity: 'payment', amount: 100, currency: 'INR', status: 'captured', order_id: 'order_DESlLckIVRkHWj', method: 'upi', captured: true } } },
    created_at: 1700000000,
  });
  const sig2 = recipe.hexBody(secret, body2);
  check(Razorpay.validateWebhookSignature(body2, sig2, secret), 'razorpay sdk accepts');
  add('razorpay', {
    origin: accepted('razorpay', 'razorpay', 'Razorpay.validateWebhookSignature'),
    secret,
    headers: [JSON_CT, ['X-Razorpay-Event-Id', 'NeCpe2Kq8nGmVt'], ['X-Razorpay-Signature', sig2]],
    body: body2,
  });
}

{
  const secret = 'mollie-webhook-secret-zK4p';
  const body = json({
    resource: 'event',
    id: 'event_GvJ8WHrp5isUdRub9CJyH',
    type: 'payment-link.paid',
    entityId: 'pl_qng5gbbv8NAZ5gpM5ZYgx',
    createdAt: '2023-11-14T22:13:20+00:00',
    _links: { self: { href: 'https://api.mollie.com/v2/events/event_GvJ8WHrp5isUdRub9CJyH', type: 'application/hal+json' }, entity: { href: 'https://api.mollie.com/v2/payment-links/pl_qng5gbbv8NAZ5gpM5ZYgx', type: 'application/hal+json' } },
  });
  add('mollie', {
    origin: byRecipe('mollie'),
    secret,
    headers: [JSON_CT, ['X-Mollie-Signature', recipe.mollie(secret, body)]],
    body,
  });
}

{
  const secret = 'wc-webhook-secret-&-quotes';
  const body = json({
    id: 727,
    parent_id: 0,
    status: 'processing',
    currency: 'USD',
    date_created: '2023-11-14T22:13:19',
    total: '29.35',
    customer_id: 0,
    billing: { first_name: 'John', last_name: 'Doe', email: 'john.doe@example.com' },
    line_items: [{ id: 315, name: 'Woo Single #1', product_id: 93, quantity: 2, total: '6.00' }],
  });
  add('woocommerce', {
    origin: byRecipe('woocommerce'),
    secret,
    headers: [
      JSON_CT,
      ['X-WC-Webhook-Source', 'https://shop.example.com/'],
      ['X-WC-Webhook-Topic', 'order.created'],
      ['X-WC-Webhook-Resource', 'order'],
      ['X-WC-Webhook-Event', 'created'],
      ['X-WC-Webhook-Signature', recipe.b64Body(secret, body)],
      ['X-WC-Webhook-ID', '12'],
      ['X-WC-Webhook-Delivery-ID', '6f2a39c1b5e8d40f7a9c2e1b3d5f7a90'],
    ],
    body,
  });
}

{
  const secret = 'Xn7b0mXhU4qQd3r8qTnKpF9sYv2LcB6eWz1AaGjHkP5uN0oRtSiE4lMyD8fVwC==';
  const body = json({
    events: [
      {
        resourceUrl: 'https://api.xero.com/api.xro/2.0/Invoices/06bd7d96-5f9f-4d5c-8b64-2b7d4c0f8c44',
        resourceId: '06bd7d96-5f9f-4d5c-8b64-2b7d4c0f8c44',
        eventDateUtc: '2023-11-14T22:13:19.563',
        eventType: 'UPDATE',
        eventCategory: 'INVOICE',
        tenantId: 'c2cc9b6e-9458-4c7d-93cc-f02b81b0594f',
        tenantType: 'ORGANISATION',
      },
    ],
    firstEventSequence: 1,
    lastEventSequence: 1,
    entropy: 'WNRNGRMDJRWGHCQVVXZA',
  });
  add('xero', {
    origin: byRecipe('xero'),
    secret,
    headers: [JSON_CT, ['x-xero-signature', recipe.b64Body(secret, body)]],
    body,
  });
}

{
  const secret = 'b7c3f1a2-9d8e-4f6a-8b5c-2e1d0f9a8b7c';
  const body = json({
    eventNotifications: [{ realmId: '1185883450', dataChangeEvent: { entities: [{ name: 'Customer', id: '1', operation: 'Create', lastUpdated: '2023-11-14T22:13:19.000Z' }] } }],
  });
  add('quickbooks', {
    origin: byRecipe('quickbooks'),
    secret,
    headers: [JSON_CT, ['intuit-signature', recipe.b64Body(secret, body)]],
    body,
  });
}

{
  const secret = 'Ea8kx2+9rD0aVbM3ZbtRq5Xq8l6Fz7P1yW2nS4cJ0hU=';
  const otherKey = 'Qm4pL7vZ2sX9dR1tK6wY3bN8cF0hJ5gA2eT7uI9oP1k=';
  const body = json({
    event: 'envelope-completed',
    apiVersion: 'v2.1',
    uri: '/restapi/v2.1/accounts/9b1a2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d/envelopes/4b728be4-4f1e-4b1c-9c0e-4b1c9c0e4b1c',
    retryCount: 0,
    configurationId: 10418,
    generatedDateTime: '2023-11-14T22:13:19.5540000Z',
    data: { accountId: '9b1a2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d', userId: '5d2e1f0a-9b8c-4d7e-8f6a-5b4c3d2e1f0a', envelopeId: '4b728be4-4f1e-4b1c-9c0e-4b1c9c0e4b1c' },
  });
  add('docusign', {
    origin: byRecipe('docusign'),
    secret,
    headers: [JSON_CT, ['X-Authorization-Digest', 'HMACSHA256'], ['X-DocuSign-Signature-1', recipe.b64Body(secret, body)]],
    body,
  });
  // Two Connect keys active, one header per key: this secret is the first, another key signs -2.
  add('docusign', {
    origin: byRecipe('docusign'),
    secret,
    headers: [JSON_CT, ['X-Authorization-Digest', 'HMACSHA256'], ['X-DocuSign-Signature-1', recipe.b64Body(secret, body)], ['X-DocuSign-Signature-2', recipe.b64Body(otherKey, body)]],
    body,
  });
}

{
  const src = 'https://github.com/box/box-node-sdk/blob/7dcf9c2bfc44d9436d73c253ce2c9805a41d0e75/tests/lib/managers/webhooks-test.js';
  const ts = '2020-01-01T00:00:00-07:00';
  const body = '{"type":"webhook_event","webhook":{"id":"1234567890"},"trigger":"FILE.UPLOADED","source":{"id":"1234567890","type":"file","name":"Test.txt"}}';
  const primary = '6TfeAW3A1PASkgboxxA5yqHNKOwFyMWuEXny/FPD5hI=';
  const secondary = 'v+1CD1Jdo3muIcbpv5lxxgPglOqMfsNHPV899xWYydo=';
  same(recipe.box('SamplePrimaryKey', ts, body), primary, 'box published primary');
  same(recipe.box('SampleSecondaryKey', ts, body), secondary, 'box published secondary');
  const headers = [
    JSON_CT,
    ['BOX-DELIVERY-TIMESTAMP', ts],
    ['BOX-SIGNATURE-ALGORITHM', 'HmacSHA256'],
    ['BOX-SIGNATURE-PRIMARY', primary],
    ['BOX-SIGNATURE-SECONDARY', secondary],
    ['BOX-SIGNATURE-VERSION', '1'],
  ];
  const now = Math.floor(Date.parse(ts) / 1000);
  const boxAccepts = (raw, hdrs, primary, secondaryKey) =>
    at(now, () => BoxWebhooksManager.validateMessage(raw, headerMap(hdrs), primary, secondaryKey ? { secondaryKey } : {}));
  check(await boxAccepts(body, headers, 'SamplePrimaryKey'), 'box-node-sdk accepts its test vector');
  add('box', { origin: published(src), secret: 'SamplePrimaryKey', headers, body, now });

  const secret = 'box-primary-signature-key-4Jt8';
  const ts2 = '2023-11-14T14:13:20-08:00';
  const body2 = json({
    type: 'webhook_event',
    id: 'eb0c4e06-751f-442c-86f8-fd5bb404dbec',
    created_at: '2023-11-14T14:13:19-08:00',
    trigger: 'FILE.UPLOADED',
    webhook: { id: '53', type: 'webhook' },
    created_by: { type: 'user', id: '2', name: 'Aaron Levie', login: 'aaron@example.com' },
    source: { id: '73835521473', type: 'file', name: 'report.pdf' },
  });
  const headers2 = [
    JSON_CT,
    ['BOX-DELIVERY-ID', 'f96bb54b-ee16-4fc5-aa65-8c2d9e5b546f'],
    ['BOX-DELIVERY-TIMESTAMP', ts2],
    ['BOX-SIGNATURE-ALGORITHM', 'HmacSHA256'],
    ['BOX-SIGNATURE-PRIMARY', recipe.box(secret, ts2, body2)],
    ['BOX-SIGNATURE-SECONDARY', recipe.box('box-secondary-signature-key-Zq1', ts2, body2)],
    ['BOX-SIGNATURE-VERSION', '1'],
  ];
  const boxAt = (raw, primary, secondaryKey) =>
    at(T, () => BoxWebhooksManager.validateMessage(raw, headerMap(headers2), primary, secondaryKey ? { secondaryKey } : {}));
  check(await boxAt(body2, secret), 'box-node-sdk accepts the primary signature');
  check(await boxAt(body2, 'another-key', 'box-secondary-signature-key-Zq1'), 'box-node-sdk accepts the secondary signature');
  check(!(await boxAt(tampered(body2), secret, 'box-secondary-signature-key-Zq1')), 'box-node-sdk rejects a changed body');
  add('box', {
    origin: accepted('box', 'box-node-sdk', 'WebhooksManager.validateMessage'),
    secret,
    headers: headers2,
    body: body2,
  });
}

{
  const secret = 'dbx-app-secret-n3o2k1';
  const body = json({ list_folder: { accounts: ['dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc'] }, delta: { users: [12345678] } });
  add('dropbox', {
    origin: byRecipe('dropbox'),
    secret,
    headers: [JSON_CT, ['X-Dropbox-Signature', recipe.hexBody(secret, body)]],
    body,
  });
}

{
  const secret = 'calendly-signing-key-Vx92';
  const body = json({
    created_at: '2023-11-14T22:13:20.000000Z',
    created_by: 'https://api.calendly.com/users/AAAAAAAAAAAAAAAA',
    event: 'invitee.created',
    payload: {
      uri: 'https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAAAAAAAAAAAAAA',
      email: 'test@example.com',
      name: 'John Doe',
      status: 'active',
      scheduled_event: { uri: 'https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2', name: '15 Minute Meeting', start_time: '2023-11-20T15:00:00.000000Z', end_time: '2023-11-20T15:15:00.000000Z' },
    },
  });
  add('calendly', {
    origin: byRecipe('calendly'),
    secret,
    headers: [JSON_CT, ['Calendly-Webhook-Signature', recipe.stripeLike(secret, T, body)]],
    body,
  });
}

{
  const secret = 'typeform-webhook-secret';
  const body = json({
    event_id: '01HF8Z3K2Q7X9W4V6M5N3B2C1D',
    event_type: 'form_response',
    form_response: {
      form_id: 'lT4Z3j',
      token: 'a3a12ec67a1365927098a606107fac15',
      submitted_at: '2023-11-14T22:13:19Z',
      landed_at: '2023-11-14T22:12:01Z',
      definition: { id: 'lT4Z3j', title: 'Webhooks survey' },
      answers: [{ type: 'text', text: 'Lorem ipsum dolor', field: { id: 'DlXFaesGBpoF', type: 'long_text' } }],
    },
  });
  add('typeform', {
    origin: byRecipe('typeform'),
    secret,
    headers: [JSON_CT, ['Typeform-Signature', recipe.typeform(secret, body)]],
    body,
  });
}

{
  const secret = 'dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ==';
  const body = json({
    account_id: 22129848,
    detail: { actor_id: '8447388090494', assignee_id: '8447388090494', brand_id: '8447346621310', created_at: '2023-11-14T22:13:19Z', id: '5158', status: 'NEW', subject: 'Help, my webhook is late', type: 'TASK' },
    event: {},
    id: 'cbe4028c-7239-495d-b020-f22348516046',
    subject: 'zen:ticket:5158',
    time: '2023-11-14T22:13:20.000000000Z',
    type: 'zen:event-type:ticket.created',
    zendesk_event_version: '2022-11-06',
  });
  add('zendesk', {
    origin: byRecipe('zendesk'),
    secret,
    headers: [
      JSON_CT,
      ['X-Zendesk-Webhook-Id', '01GB9ABJ1BHKY9E8FZSRB3W5F1'],
      ['X-Zendesk-Webhook-Invocation-Id', '8350205582'],
      ['X-Zendesk-Webhook-Signature', recipe.zendesk(secret, T_RFC, body)],
      ['X-Zendesk-Webhook-Signature-Timestamp', T_RFC],
    ],
    body,
  });
}

{
  const secret = 'yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy';
  const url = 'https://hooks.example.com/v1/hooks/hubspot?portal=62515';
  const body = json([
    { eventId: 100, subscriptionId: 12345, portalId: 62515, appId: 54321, occurredAt: 1700000000000, subscriptionType: 'contact.creation', attemptNumber: 0, objectId: 123, changeSource: 'CRM', changeFlag: 'NEW' },
  ]);
  const sig = HubSpotSignature.getSignature('POST', 'v3', { clientSecret: secret, requestBody: body, url, timestamp: T_MS });
  same(sig, recipe.hubspot(secret, 'POST', url, body, T_MS), 'hubspot sdk');
  add('hubspot', {
    origin: sdk('@hubspot/api-client', "Signature.getSignature('POST', 'v3', ...)"),
    secret,
    url,
    headers: [JSON_CT, ['X-HubSpot-Request-Timestamp', T_MS], ['X-HubSpot-Signature-v3', sig]],
    body,
  });
}

// ---------------------------------------------------------------- messaging

{
  const secret = '8f742231b10e8888abcd99yyyzzz85a5';
  const ts = '1531420618';
  const body =
    'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c';
  const sig = 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503';
  same(recipe.v0(secret, ts, body), sig, 'slack published');
  check(
    isValidSlackRequest({ signingSecret: secret, body, headers: { 'x-slack-signature': sig, 'x-slack-request-timestamp': Number(ts) }, nowMilliseconds: Number(ts) * 1000 }),
    'bolt accepts the published example',
  );
  add('slack', {
    origin: published('https://api.slack.com/authentication/verifying-requests-from-slack'),
    secret,
    headers: [FORM_CT, ['X-Slack-Request-Timestamp', ts], ['X-Slack-Signature', sig]],
    body,
    now: Number(ts),
  });

  const secret2 = 'e3b0c44298fc1c149afbf4c8996fb924';
  const body2 = json({
    token: 'XXYYZZ',
    team_id: 'T123ABC456',
    api_app_id: 'A123ABC456',
    event: { type: 'app_mention', user: 'U123ABC456', text: '<@U0LAN0Z89> is the webhook up?', ts: '1700000000.000200', channel: 'C123ABC456', event_ts: '1700000000.000200' },
    type: 'event_callback',
    event_id: 'Ev123ABC456',
    event_time: 1700000000,
  });
  const sig2 = recipe.v0(secret2, T, body2);
  check(
    isValidSlackRequest({ signingSecret: secret2, body: body2, headers: { 'x-slack-signature': sig2, 'x-slack-request-timestamp': T }, nowMilliseconds: T * 1000 }),
    'bolt accepts',
  );
  add('slack', {
    origin: accepted('slack', '@slack/bolt', 'isValidSlackRequest'),
    secret: secret2,
    headers: [JSON_CT, ['X-Slack-Request-Timestamp', String(T)], ['X-Slack-Signature', sig2]],
    body: body2,
  });
}

{
  const publicKey = hex(ed.publicKey);
  const bodies = [
    json({ application_id: '1182741922442416179', id: '1182742147680092262', token: 'aW50ZXJhY3Rpb246MTE4Mjc0MjE0NzY4MDA5MjI2Mg', type: 1, user: { id: '53908232506183680', username: 'mason' }, version: 1 }),
    json({
      app_permissions: '442368',
      application_id: '1182741922442416179',
      channel_id: '1182742002233061396',
      data: { id: '1182742417884205098', name: 'status', type: 1 },
      guild_id: '1182741999821041714',
      id: '1182742421122244668',
      member: { user: { id: '53908232506183680', username: 'mason' }, roles: [] },
      token: 'aW50ZXJhY3Rpb246MTE4Mjc0MjQyMTEyMjI0NDY2OA',
      type: 2,
      version: 1,
    }),
  ];
  for (const body of bodies) {
    const sig = recipe.discord(String(T), body);
    check(await discordVerifyKey(body, sig, String(T), publicKey), 'discord-interactions accepts');
    add('discord', {
      origin: accepted('discord', 'discord-interactions', 'verifyKey', 'tweetnacl Ed25519 from a fixed seed'),
      secret: publicKey,
      headers: [JSON_CT, ['X-Signature-Ed25519', sig], ['X-Signature-Timestamp', String(T)]],
      body,
    });
  }
}

{
  const secret = 'zoom-secret-token-Ux7bQ';
  const body = json({
    event: 'meeting.started',
    event_ts: 1700000000000,
    payload: { account_id: 'AAAAAABBBB', object: { id: '1234567890', uuid: '4444AAAiAAAAAiAiAiiAii==', host_id: 'x1yCzABCDEfg23HiJKl4mN', topic: 'Spillway standup', type: 2, start_time: '2023-11-14T22:13:19Z', timezone: 'America/Los_Angeles', duration: 30 } },
  });
  const headers = [JSON_CT, ['x-zm-request-timestamp', String(T)], ['x-zm-signature', recipe.v0(secret, T, body)]];
  // Rivet's receivers check the signature before handing an event on (400 when it fails).
  // Rivet signs JSON.stringify(JSON.parse(body)), which is the body itself here.
  const zoom = async (raw) => {
    const debug = console.debug;
    console.debug = () => {}; // the Lambda receiver logs every event
    try {
      return await new ZoomLambdaReceiver({ webhooksSecretToken: secret }).start()({ body: raw, headers: headerMap(headers), isBase64Encoded: false }, {});
    } finally {
      console.debug = debug;
    }
  };
  same((await zoom(body)).statusCode, 200, '@zoom/rivet accepts');
  const refused = await zoom(tampered(body));
  check(refused.statusCode === 400 && refused.body.includes('Failed to verify'), '@zoom/rivet rejects a changed body');
  add('zoom', {
    origin: accepted('zoom', '@zoom/rivet', 'AwsLambdaReceiver (@zoom/rivet/meetings)'),
    secret,
    headers,
    body,
  });
}

{
  const secret = 's3cre7-twitch-eventsub';
  const id = 'befa7b53-d79d-478f-86b9-120f112b044e';
  const ts = '2023-11-14T22:13:20.634234626Z';
  const body = json({
    subscription: { id: 'f1c2a387-161a-49f9-a165-0f21d7a4e1c4', status: 'enabled', type: 'channel.follow', version: '2', cost: 0, condition: { broadcaster_user_id: '1337', moderator_user_id: '1337' }, transport: { method: 'webhook', callback: 'https://hooks.example.com/v1/hooks/twitch' }, created_at: '2023-11-14T22:00:00.000000000Z' },
    event: { user_id: '1234', user_login: 'cool_user', user_name: 'Cool_User', broadcaster_user_id: '1337', broadcaster_user_login: 'cooler_user', broadcaster_user_name: 'Cooler_User', followed_at: '2023-11-14T22:13:19.475111Z' },
  });
  add('twitch', {
    origin: byRecipe('twitch'),
    secret,
    headers: [
      JSON_CT,
      ['Twitch-Eventsub-Message-Id', id],
      ['Twitch-Eventsub-Message-Retry', '0'],
      ['Twitch-Eventsub-Message-Type', 'notification'],
      ['Twitch-Eventsub-Message-Signature', recipe.twitch(secret, id, ts, body)],
      ['Twitch-Eventsub-Message-Timestamp', ts],
      ['Twitch-Eventsub-Subscription-Type', 'channel.follow'],
      ['Twitch-Eventsub-Subscription-Version', '2'],
    ],
    body,
  });
}

{
  const secret = '6e1a5b4c3d2e1f0a9b8c7d6e5f4a3b2c';
  const body = json({
    object: 'page',
    entry: [{ id: '106385142183735', time: 1700000000, changes: [{ field: 'feed', value: { item: 'status', post_id: '106385142183735_122102155244131', verb: 'add', published: 1, created_time: 1700000000, message: 'Webhooks are live', from: { id: '106385142183735', name: 'Spillway' } } }] }],
  });
  add('meta', {
    origin: byRecipe('meta'),
    secret,
    headers: [JSON_CT, ['X-Hub-Signature-256', recipe.meta(secret, body)]],
    body,
  });
}

{
  const secret = '3c5e7a9b1d2f4a6c8e0b2d4f6a8c0e2a';
  const body = json({
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '102290129340398',
        changes: [
          {
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' },
              contacts: [{ profile: { name: 'Sheena Nelson' }, wa_id: '16505551234' }],
              messages: [{ from: '16505551234', id: 'wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=', timestamp: '1700000000', text: { body: 'Does it work with WhatsApp?' }, type: 'text' }],
            },
            field: 'messages',
          },
        ],
      },
    ],
  });
  add('whatsapp', {
    origin: byRecipe('whatsapp'),
    secret,
    headers: [JSON_CT, ['X-Hub-Signature-256', recipe.meta(secret, body)]],
    body,
  });
}

{
  const secret = '9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d';
  const body = json({
    object: 'instagram',
    entry: [{ id: '17841405822304914', time: 1700000000, changes: [{ field: 'comments', value: { from: { id: '232323232', username: 'test' }, media: { id: '123123123', media_product_type: 'FEED' }, id: '17865799348089039', text: 'This is an example.' } }] }],
  });
  add('instagram', {
    origin: byRecipe('instagram'),
    secret,
    headers: [JSON_CT, ['X-Hub-Signature-256', recipe.meta(secret, body)]],
    body,
  });
}

{
  const src = 'https://github.com/twilio/twilio-node/blob/main/spec/validation.spec.js';
  const token = '12345';
  const url = 'https://mycompany.com/myapp.php?foo=1&bar=2';
  const params = { CallSid: 'CA1234567890ABCDE', Caller: '+14158675309', Digits: '1234', From: '+14158675309', To: '+18005551212' };
  const sig = 'RSOYDt4T1cUTdK1PDd93/VVr8B8=';
  const body = new URLSearchParams(params).toString();
  same(recipe.urlForm(token, url, body), sig, 'twilio published');
  check(twilio.validateRequest(token, sig, url, params), 'twilio sdk accepts its test vector');
  add('twilio', {
    origin: published(src),
    secret: token,
    url,
    headers: [FORM_CT, ['I-Twilio-Idempotency-Token', '3f1b9a7e-2c4d-4e6f-8a0b-1c2d3e4f5a6b'], ['X-Twilio-Signature', sig]],
    body,
  });

  const token2 = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
  const url2 = 'https://hooks.example.com/v1/hooks/twilio?source=sms';
  const params2 = {
    ToCountry: 'US',
    ToState: 'CA',
    SmsMessageSid: 'SM2c1a9b7e5d3f1a8c6e4b2d0f9a7c5e3b',
    NumMedia: '0',
    SmsSid: 'SM2c1a9b7e5d3f1a8c6e4b2d0f9a7c5e3b',
    SmsStatus: 'received',
    Body: 'Is the webhook up? Yes & no',
    FromCountry: 'US',
    To: '+15005550006',
    NumSegments: '1',
    MessageSid: 'SM2c1a9b7e5d3f1a8c6e4b2d0f9a7c5e3b',
    AccountSid: 'AC0123456789abcdef0123456789abcdef',
    From: '+14155551234',
    ApiVersion: '2010-04-01',
  };
  const sig2 = twilio.getExpectedTwilioSignature(token2, url2, params2);
  const body2 = new URLSearchParams(params2).toString();
  same(sig2, recipe.urlForm(token2, url2, body2), 'twilio sdk');
  add('twilio', {
    origin: sdk('twilio', 'getExpectedTwilioSignature'),
    secret: token2,
    url: url2,
    headers: [FORM_CT, ['I-Twilio-Idempotency-Token', '7c9e1a3b-5d7f-4a2c-8e0b-2d4f6a8c0e1f'], ['X-Twilio-Signature', sig2]],
    body: body2,
  });
}

{
  const src = 'https://github.com/sendgrid/sendgrid-nodejs/blob/main/packages/eventwebhook/src/eventwebhook.spec.js';
  const ew = new SendGridEventWebhook();
  const cases = [
    {
      key: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==',
      ts: '1600112502',
      sig: 'MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=',
      body: '[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address","sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA","sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]\r\n',
    },
    {
      key: 'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQ4LIFtWztlsF7skFqOncjD1lun4H5w8XOhyOArHW9RcIx/FfEzx6cikC/yPfUvwaX/JScE7Fc9CJD2afQ9Ok3Q==',
      ts: '1619651159',
      sig: 'MEYCIQC/I4o6vCgqRYrTljjoVWB/GRWNtxeePlLMHr3x9ETeRQIhAIpV+03nREPTTHWSW0wIOA0EoMPdcNgXa70yCaqDJlu5',
      body: '[{"email":"invalid@gmail.com","event":"processed","send_at":0,"sg_event_id":"cHJvY2Vzc2VkLTE5OTQyMTEyLXFOd0JMZ1BRUWpXNkRKdktRd1NBYnctMA","sg_message_id":"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0","smtp-id":"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>","timestamp":1619651146},\r\n{"email":"invalid@gmail.com","event":"bounce","ip":"167.89.101.76","reason":"552 5.2.2 The email account that you tried to reach is over quota and inactive. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaPerm c17si1130468pgv.34 - gsmtp","sg_event_id":"Ym91bmNlLTAtMTk5NDIxMTItcU53QkxnUFFRalc2REp2S1F3U0Fidy0w","sg_message_id":"qNwBLgPQQjW6DJvKQwSAbw.filterdrecv-canary-547b64655b-cw6zx-1-6089EA4A-56.0","smtp-id":"<qNwBLgPQQjW6DJvKQwSAbw@ismtpd0178p1mdw1.sendgrid.net>","status":"5.2.2","timestamp":1619651147,"tls":1,"type":"blocked"}]\r\n',
    },
  ];
  const headersFor = (sig, ts) => [JSON_CT, ['X-Twilio-Email-Event-Webhook-Signature', sig], ['X-Twilio-Email-Event-Webhook-Timestamp', ts]];
  for (const c of cases) {
    check(recipe.sendgridVerify(c.key, c.ts, c.body, c.sig), 'sendgrid published verifies with node crypto');
    check(ew.verifySignature(ew.convertPublicKeyToECDSA(c.key), c.body, c.sig, c.ts), 'sendgrid sdk accepts its test vector');
    add('sendgrid', { origin: published(src), secret: c.key, headers: headersFor(c.sig, c.ts), body: c.body, now: Number(c.ts) });
  }
  const body = `${json([
    { email: 'ada@example.com', timestamp: 1699999990, 'smtp-id': '<14c5d75ce93.dfd.64b469@ismtpd-555>', event: 'delivered', category: ['receipts'], sg_event_id: 'ZGVsaXZlcmVkLTAtMjc0NjQ1ODgtMTQ', sg_message_id: '14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0', response: '250 OK' },
  ])}\r\n`;
  // ECDSA signatures are randomised: keep the one already written while it still verifies, so
  // that regenerating leaves the file unchanged.
  const previous = (() => {
    try {
      return JSON.parse(fs.readFileSync(path.join(OUT, 'sendgrid.json'), 'utf8'));
    } catch {
      return [];
    }
  })()
    .filter((v) => v.secret === P256_PUBLIC_B64 && v.body === body)
    .map((v) => header(v.headers, 'x-twilio-email-event-webhook-signature'))
    .find((old) => old && recipe.sendgridVerify(P256_PUBLIC_B64, String(T), body, old));
  const sig = previous ?? b64(crypto.sign('sha256', Buffer.from(String(T) + body), p256));
  check(recipe.sendgridVerify(P256_PUBLIC_B64, String(T), body, sig), 'sendgrid recipe verifies');
  check(ew.verifySignature(ew.convertPublicKeyToECDSA(P256_PUBLIC_B64), body, sig, String(T)), 'sendgrid sdk accepts');
  add('sendgrid', {
    origin: accepted('sendgrid', '@sendgrid/eventwebhook', 'EventWebhook.verifySignature', 'node crypto ECDSA P-256 with a fixed key'),
    secret: P256_PUBLIC_B64,
    headers: headersFor(sig, String(T)),
    body,
  });
}

{
  // The webhook test of Mailgun's PHP SDK (Mailgun's GitHub org): key, timestamp, token and
  // signature transcribed; they are put in the JSON "signature" block Mailgun sends today
  // (the test posts them as form fields, as Mailgun's legacy webhooks did). Only the
  // timestamp and token are signed.
  const src = 'https://github.com/mailgun/mailgun-php/blob/043658f9967352dd9a4647c4ab1f5de4ffb1684c/tests/MailgunTest.php (testVerifyWebhookGood)';
  const secret = 'key-3ax6xnjp29jd6fds4gc373sgvjxteol0';
  const timestamp = '1403645220';
  const token = '5egbgr1vjgqxtrnp65xfznchgdccwh5d6i09vijqi3whgowmn6';
  const signature = '9cfc5c41582e51246e73c88d34db3af0a3a2692a76fbab81492842f000256d33';
  same(recipe.mailgun(secret, timestamp, token), signature, 'mailgun published');
  add('mailgun', { origin: published(src), secret, headers: [JSON_CT], body: json({ signature: { timestamp, token, signature } }), now: Number(timestamp) });
}

{
  const secret = 'key-mailgun-signing-3f9b2c1d7e';
  const token = 'f0d3e1a2b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9';
  const body = json({
    signature: { token, timestamp: String(T), signature: recipe.mailgun(secret, String(T), token) },
    'event-data': {
      id: 'CPgfbmQMTCKtHW6uIWtuVe',
      timestamp: 1699999999.0,
      'log-level': 'info',
      event: 'delivered',
      recipient: 'alice@example.com',
      message: { headers: { to: 'Alice <alice@example.com>', 'message-id': '20231114221320.1.ABCDEF@mg.example.com', from: 'Spillway <bot@mg.example.com>', subject: 'Your delivery report' } },
    },
  });
  add('mailgun', {
    origin: byRecipe('mailgun'),
    secret,
    headers: [JSON_CT],
    body,
  });
}

{
  const secret = 'mandrill-webhook-key-6Xw2tYz';
  const url = hookUrl('mandrill');
  const events = json([
    { event: 'send', msg: { ts: 1700000000, subject: 'Your receipt', email: 'ada@example.com', sender: 'shop@example.com', tags: ['receipt'], state: 'sent', _id: 'f3a5c7e9b1d24f68a0c2e4b6d8f0a2c4', _version: 'exampleaaaaaaaaaaaaaaa' }, _id: 'f3a5c7e9b1d24f68a0c2e4b6d8f0a2c4', ts: 1700000000 },
  ]);
  const body = new URLSearchParams({ mandrill_events: events }).toString();
  add('mandrill', {
    origin: byRecipe('mandrill'),
    secret,
    url,
    headers: [FORM_CT, ['X-Mandrill-Signature', recipe.urlForm(secret, url, body)]],
    body,
  });
}

{
  const secret = 'postmark:pm-hook-pass-4Wd9';
  const body = json({
    RecordType: 'Delivery',
    ServerID: 23,
    MessageStream: 'outbound',
    MessageID: '00000000-0000-0000-0000-000000000000',
    Recipient: 'john@example.com',
    Tag: 'welcome-email',
    DeliveredAt: '2023-11-14T22:13:19Z',
    Details: 'Test delivery webhook details',
    Metadata: { a_key: 'a_value', b_key: 'b_value' },
  });
  add('postmark', {
    origin: `recipe: HTTP Basic credentials from the webhook URL, following ${PRESETS.postmark.docs}`,
    secret,
    headers: [JSON_CT, ['Authorization', recipe.basic(secret)]],
    body,
  });
}

// Standard Webhooks and its senders.
{
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const id = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
  const ts = 1614265330;
  const body = '{"test": 2432232314}';
  const sig = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';
  same(standard(secret, id, ts, body), sig, 'standard webhooks published');
  await at(ts, () => new StandardWebhook(secret).verify(body, { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': sig }));
  add('standard-webhooks', {
    origin: published('https://github.com/standard-webhooks/standard-webhooks/blob/main/libraries/python/tests/test_webhooks.py'),
    secret,
    headers: [JSON_CT, ['webhook-id', id], ['webhook-timestamp', String(ts)], ['webhook-signature', sig]],
    body,
    now: ts,
  });
  add('svix', {
    origin: published('https://docs.svix.com/receiving/verifying-payloads/how-manual'),
    secret,
    headers: [JSON_CT, ['svix-id', id], ['svix-timestamp', String(ts)], ['svix-signature', sig]],
    body,
    now: ts,
  });
}

// Standard Webhooks v1a (Ed25519). No released library signs or verifies v1a (npm and PyPI
// `standardwebhooks` 1.1.x skip every label but v1), so these are published vectors: Svix's
// server test whose signature is the spec's own example, and the tests of the two v1a
// libraries proposed upstream (Go, JS). Each public key is derived here from the published
// key, and each signature checked with tweetnacl.
{
  const id = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
  const ts = 1614265330;
  const body = '{"test": 2432232314}';
  const fromSeed = (seed) => Buffer.from(nacl.sign.keyPair.fromSeed(new Uint8Array(seed)).publicKey);
  const published64 = Buffer.from('6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==', 'base64');
  same(b64(fromSeed(published64.subarray(0, 32))), b64(published64.subarray(32)), 'svix whsk_ is seed and public key');
  for (const { url, publicKey, signature } of [
    {
      url: 'https://github.com/svix/svix-webhooks/blob/4fc0cfb8b426c87ef7e2b937e7d896a71d456a47/server/svix-server/src/worker.rs (test_asymmetric_key_signing: the spec example header, v1 and v1a)',
      publicKey: published64.subarray(32),
      signature: 'v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==',
    },
    {
      url: 'https://github.com/standard-webhooks/standard-webhooks/blob/f50a00aed19df45a9f5f98121ff2b9effbf10a31/libraries/go/webhook_asymmetric_test.go (TestAsymmetricWebhookSign, PR #253)',
      publicKey: fromSeed(Buffer.from('VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk=', 'base64')),
      signature: 'v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag==',
    },
    {
      url: 'https://github.com/standard-webhooks/standard-webhooks/blob/659f67424f865ba66552a9388485f7273ea54862/libraries/javascript/src/webhook.test.ts (v1a: sign function works, PR #308; the seed is 32 bytes of 1)',
      publicKey: fromSeed(Buffer.alloc(32, 1)),
      signature: 'v1a,Ykcu7AtGZGmZxFEH1Gaa2Nd7feY/CTuruoL4fqgnKwfbHU4DhemoVHZdvGfIvKvn4BIgwktLGGPGIr/i9nK7AA==',
    },
  ]) {
    const v1a = signature.split(' ').find((s) => s.startsWith('v1a,')).slice(4);
    check(
      nacl.sign.detached.verify(new Uint8Array(Buffer.from(`${id}.${ts}.${body}`)), new Uint8Array(Buffer.from(v1a, 'base64')), new Uint8Array(publicKey)),
      `v1a vector of ${url}`,
    );
    add('standard-webhooks-v1a', {
      origin: published(url),
      secret: `whpk_${b64(publicKey)}`,
      headers: [JSON_CT, ['webhook-id', id], ['webhook-timestamp', String(ts)], ['webhook-signature', signature]],
      body,
      now: ts,
    });
  }
}

/** A Standard Webhooks request signed by `lib` ('standardwebhooks' or 'svix'), under its header names. */
function standardSigned(lib, secret, id, body) {
  const Webhook = lib === 'svix' ? SvixWebhook : StandardWebhook;
  const sig = new Webhook(secret).sign(id, new Date(T * 1000), body);
  same(sig, standard(secret, id, T, body), `${lib} sign`);
  const p = lib === 'svix' ? 'svix' : 'webhook';
  return { sig, headers: [JSON_CT, [`${p}-id`, id], [`${p}-timestamp`, String(T)], [`${p}-signature`, sig]] };
}

{
  const secret = 'whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD';
  const body = json({ type: 'invoice.paid', timestamp: '2023-11-14T22:13:20.000Z', data: { id: 'inv_2Ys8gWm1rB', customer_id: 'cus_9Tz4kQ', amount: 2500, currency: 'EUR' } });
  const { headers } = standardSigned('standardwebhooks', secret, 'msg_2Ys8h2cJ7pLq1xV9nR4tW6bZ3mK', body);
  add('standard-webhooks', { origin: sdk('standardwebhooks', 'Webhook.sign'), secret, headers, body });
}

{
  const secret = 'whsec_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH';
  const body = json({ type: 'user.signup', timestamp: '2023-11-14T22:13:20.000Z', data: { id: 'user_1a2b3c', email: 'ada@example.com' } });
  const { headers } = standardSigned('svix', secret, 'msg_2Ys8iLq6wTnB4kR7mZ1pV3cX9dF', body);
  add('svix', { origin: sdk('svix', 'Webhook.sign'), secret, headers, body });
}

{
  const secret = 'whsec_Y2xlcmstdmVjdG9yLXNlY3JldC0yMDIz';
  const body = json({
    data: { id: 'user_29w83sxmDNGwOuEthce5gg56FcC', object: 'user', first_name: 'Example', last_name: 'Example', email_addresses: [{ id: 'idn_29w83yL7CwVlJXylYLxcslromF1', email_address: 'example@example.org' }], created_at: 1699999999000 },
    object: 'event',
    type: 'user.created',
    timestamp: 1700000000000,
    instance_id: 'ins_2Ys8jK1mN4pQ7rT0vW3yZ6bC9dE',
  });
  const { headers } = standardSigned('svix', secret, 'msg_2Ys8kR5tY8wB1dF4hJ7mP0sV3xZ', body);
  add('clerk', { origin: sdk('svix', 'Webhook.sign'), secret, headers, body });
}

{
  const secret = 'whsec_cmVzZW5kLXZlY3Rvci1zZWNyZXQtMjAyMw==';
  const id = 'msg_2Ys8mW2cF5hK8nQ1sV4yB7eH0jL';
  const body = json({
    type: 'email.delivered',
    created_at: '2023-11-14T22:13:20.000Z',
    data: { created_at: '2023-11-14T22:13:18.000Z', email_id: '56761188-7520-42d8-8898-ff6fc54ce618', from: 'Acme <onboarding@resend.dev>', to: ['delivered@resend.dev'], subject: 'Sending this example' },
  });
  const { sig, headers } = standardSigned('svix', secret, id, body);
  await at(T, () => new Resend('re_test_vectors').webhooks.verify({ payload: body, headers: { id, timestamp: String(T), signature: sig }, webhookSecret: secret }));
  add('resend', { origin: `${sdk('svix', 'Webhook.sign')}, accepted by npm ${version('resend')} resend.webhooks.verify`, secret, headers, body });
}

{
  const secret = 'whsec_b3BlbmFpLXZlY3Rvci1zZWNyZXQtMjAyMyE=';
  const id = 'wh_6553f2a0b1c2d3e4f5a6b7c8';
  const body = json({ id: 'evt_6553f2a0c1d2e3f4a5b6c7d8', object: 'event', created_at: 1700000000, type: 'response.completed', data: { id: 'resp_6553f29f1a2b3c4d5e6f7a8b' } });
  const { headers } = standardSigned('standardwebhooks', secret, id, body);
  const openai = new OpenAI({ apiKey: 'sk-test-vectors' });
  await at(T, () => openai.webhooks.verifySignature(body, Object.fromEntries(headers), secret));
  add('openai', { origin: `${sdk('standardwebhooks', 'Webhook.sign')}, accepted by npm ${version('openai')} client.webhooks.verifySignature`, secret, headers, body });
}

{
  const secret = 'whsec_cmVwbGljYXRlLXZlY3Rvci1zZWNyZXQ=';
  const id = 'msg_2Ys8pX3dG6jL9oR2tW5zC8fI1kM';
  const body = json({
    id: 'ufawqhfynnddngldkgtslldrkq',
    model: 'replicate/hello-world',
    version: '5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa',
    input: { text: 'Alice' },
    output: 'hello Alice',
    status: 'succeeded',
    created_at: '2023-11-14T22:13:15.000000Z',
    completed_at: '2023-11-14T22:13:19.000000Z',
    urls: { get: 'https://api.replicate.com/v1/predictions/ufawqhfynnddngldkgtslldrkq', cancel: 'https://api.replicate.com/v1/predictions/ufawqhfynnddngldkgtslldrkq/cancel' },
  });
  const { sig, headers } = standardSigned('standardwebhooks', secret, id, body);
  check(await replicateValidate({ id, timestamp: String(T), body, secret, signature: sig }), 'replicate accepts');
  add('replicate', { origin: `${sdk('standardwebhooks', 'Webhook.sign')}, accepted by npm ${version('replicate')} validateWebhook`, secret, headers, body });
}

{
  const secret = 'intercom-client-secret-0a1b2c3d';
  const body = json({
    type: 'notification_event',
    app_id: 'abc12de3',
    data: { type: 'notification_event_data', item: { type: 'contact', id: '6553f2a0c1d2e3f4a5b6c7d8', role: 'user', email: 'ada@example.com' } },
    links: {},
    id: 'notif_1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d',
    topic: 'contact.user.created',
    delivery_status: 'pending',
    delivery_attempts: 1,
    delivered_at: 0,
    first_sent_at: 1700000000,
    created_at: 1699999999,
    self: null,
  });
  add('intercom', {
    origin: byRecipe('intercom'),
    secret,
    headers: [JSON_CT, ['X-Hub-Signature', recipe.intercom(secret, body)]],
    body,
  });
}

{
  const secret = 'segment-shared-secret';
  const event = {
    anonymousId: '23adfd82-aa0f-45a7-a756-24f2a7a4c895',
    context: { library: { name: 'analytics.js', version: '2.11.1' }, ip: '108.0.78.21' },
    event: 'Order Completed',
    messageId: 'ajs-f8ca1e4de5024d9430b3928bd8ac6b96',
    properties: { order_id: '50314b8e9bcf000000000000', revenue: 25 },
    receivedAt: '2023-11-14T22:13:20.212Z',
    sentAt: '2023-11-14T22:13:20.000Z',
    timestamp: '2023-11-14T22:13:19.999Z',
    type: 'track',
    userId: '97980cfea0067',
  };
  const body = json(event); // what the destination sends as the body and signs
  const { headers: signed } = segmentWebhook.extendRequest({ settings: { sharedSecret: secret }, payload: { data: event } });
  same(signed['X-Signature'], recipe.segment(secret, body), 'segment sdk');
  add('segment', {
    origin: sdk('@segment/action-destinations', 'the Webhook destination\'s extendRequest (destinations/webhook)'),
    secret,
    headers: [JSON_CT, ['X-Signature', signed['X-Signature']]],
    body,
  });
}

{
  const secret = 'cio-reporting-signing-key-7Hq';
  const body = json({
    data: { action_id: 36, broadcast_id: 9, customer_id: '0200102', delivery_id: 'RPILAgUBcRhIBqSfeiIwdIYJKxTY', email_address: 'ada@example.com', identifiers: { id: '0200102' } },
    event_id: '01E4C4HDQ2Q0PTMJ2NRPY9FHDB',
    object_type: 'email',
    metric: 'delivered',
    timestamp: 1700000000,
  });
  const sig = recipe.customerIo(secret, T, body);
  check(customerIoVerify({ signingSecret: secret, timestamp: String(T), signature: sig, body }), 'customerio-node accepts');
  check(!customerIoVerify({ signingSecret: secret, timestamp: String(T), signature: sig, body: tampered(body) }), 'customerio-node rejects a changed body');
  add('customer-io', {
    origin: accepted('customer-io', 'customerio-node', 'verifyRequestSignature'),
    secret,
    headers: [JSON_CT, ['X-CIO-Timestamp', String(T)], ['X-CIO-Signature', sig]],
    body,
  });
}

{
  const secret = 'nylas-webhook-secret-5c2a';
  const body = json({
    specversion: '1.0',
    type: 'message.created',
    source: '/google/emails/realtime',
    id: '5b2c4f0e-7a1d-4c3b-9e8f-6a5d4c3b2a1f',
    time: 1700000000,
    webhook_delivery_attempt: 1,
    data: { application_id: 'ad410018-d306-43f9-8361-fa5d7b2172e0', object: { id: '18bcb9a3f1c2d4e5', grant_id: '41009df5-bf11-4c97-aa18-b285b5f2e386', object: 'message', subject: 'Hello from Nylas', date: 1699999999 } },
  });
  add('nylas', {
    origin: byRecipe('nylas'),
    secret,
    headers: [JSON_CT, ['X-Nylas-Signature', recipe.hexBody(secret, body)]],
    body,
  });
}

{
  const publicKey = b64(ed.publicKey);
  const body = json({
    data: {
      event_type: 'message.received',
      id: 'b301ed3f-1490-491f-995f-6e64e69674d4',
      occurred_at: '2023-11-14T22:13:19.000+00:00',
      payload: { direction: 'inbound', from: { phone_number: '+13125550000' }, to: [{ phone_number: '+17735550000' }], text: 'Hello from Telnyx', type: 'SMS', id: '4b61c3b7-5d8e-4f3a-9c2b-1a0f9e8d7c6b' },
      record_type: 'event',
    },
    meta: { attempt: 1, delivered_to: 'https://hooks.example.com/v1/hooks/telnyx' },
  });
  const sig = recipe.telnyx(String(T), body);
  const headers = [JSON_CT, ['telnyx-signature-ed25519', sig], ['telnyx-timestamp', String(T)]];
  await at(T, () => new TelnyxWebhook(publicKey).verify(body, Object.fromEntries(headers)));
  add('telnyx', {
    origin: accepted('telnyx', 'telnyx', 'TelnyxWebhook.verify (lib/webhooks)', 'tweetnacl Ed25519 from a fixed seed'),
    secret: publicKey,
    headers,
    body,
  });
}

// ---------------------------------------------------------------- platforms

{
  const secret = 'mux-webhook-signing-secret-k8Qz';
  const body = json({
    type: 'video.asset.ready',
    object: { type: 'asset', id: '0201p02fGKPE7MrbC269XRD7LpcHhrmbu0002' },
    id: '3a56ac3d-33da-4366-855b-f592d898409d',
    environment: { name: 'Production', id: 'j0863n' },
    data: { status: 'ready', playback_ids: [{ policy: 'public', id: 'OfjbmmKPPvHVIN2GE01VTk00T02t4b6M2h01' }], id: '0201p02fGKPE7MrbC269XRD7LpcHhrmbu0002', duration: 23.8 },
    created_at: '2023-11-14T22:13:19.000000Z',
    attempts: [],
    accessor_source: null,
    accessor: null,
    request_id: null,
  });
  const header = recipe.stripeLike(secret, T, body);
  const mux = new Mux({ tokenId: 'vectors', tokenSecret: 'vectors' });
  await at(T, () => mux.webhooks.verifySignature(body, { 'mux-signature': header }, secret));
  add('mux', {
    origin: accepted('mux', '@mux/mux-node', 'mux.webhooks.verifySignature'),
    secret,
    headers: [JSON_CT, ['Mux-Signature', header]],
    body,
  });
}

{
  const secret = 'workos-webhook-secret-Ab3x9';
  const payload = {
    id: 'event_01HF8Z3K2Q7X9W4V6M5N3B2C1D',
    event: 'dsync.user.created',
    data: { id: 'directory_user_01E1X1B89NH8Z3SDFJR4H7RGX7', directory_id: 'directory_01ECAZ4NV9QMV47GW873HDCX74', organization_id: 'org_01EZTR6WYX1A0DSE2CYMGXQ24Y', emails: [{ primary: true, type: 'work', value: 'veda@foo-corp.com' }], first_name: 'Veda', last_name: 'Torp', state: 'active' },
    created_at: '2023-11-14T22:13:20.000Z',
  };
  const workos = new WorkOS('sk_test_vectors');
  const sig = await workos.webhooks.computeSignature(T_MS, payload, secret);
  const body = JSON.stringify(payload); // what computeSignature signs
  const header = `t=${T_MS}, v1=${sig}`;
  same(header, recipe.workos(secret, T_MS, body), 'workos sdk');
  add('workos', {
    origin: sdk('@workos-inc/node', 'workos.webhooks.computeSignature'),
    secret,
    headers: [JSON_CT, ['WorkOS-Signature', header]],
    body,
  });
}

{
  const secret = 'wbhsec_2c1b7f3e-9d4a-4e6b-8c5f-1a0e9d8c7b6a';
  const body = json({
    data: {
      type: 'event',
      id: 'evt_XGuYWp7WGhJ2Tvq5tdh8xVK2',
      attributes: {
        name: 'inquiry.completed',
        'created-at': '2023-11-14T22:13:19.000Z',
        payload: { data: { type: 'inquiry', id: 'inq_2CVZ4HyVk6GRnsyv6Dp1xT8P', attributes: { status: 'completed', 'reference-id': 'user_1234' } } },
      },
    },
  });
  add('persona', {
    origin: byRecipe('persona'),
    secret,
    headers: [JSON_CT, ['Persona-Signature', recipe.stripeLike(secret, T, body)]],
    body,
  });
  // While Persona rotates its secret: "two space-separated sets of the key-value pairs"
  // (the docs' webhooks-best-practices page), the new secret's first.
  const rotated = 'wbhsec_9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b';
  add('persona', {
    origin: `${byRecipe('persona')} (two groups while the secret rotates; the source holds the old secret)`,
    secret,
    headers: [JSON_CT, ['Persona-Signature', `${recipe.stripeLike(rotated, T, body)} ${recipe.stripeLike(secret, T, body)}`]],
    body,
  });
}

{
  const secret = 'okta-event-hook-7d2f1c9a4b6e';
  const body = json({
    eventType: 'com.okta.event_hook',
    eventTypeVersion: '1.0',
    cloudEventsVersion: '0.1',
    source: 'https://example.okta.com/api/v1/eventHooks/whoql0HfiLGPWc8Ek0g4',
    eventId: 'b5a188b9-5ece-4636-b041-482ffda96311',
    data: { events: [{ uuid: '7ae1cdd4-6fcd-11ee-b5a1-6f2c1d3e4b5a', published: '2023-11-14T22:13:19.442Z', eventType: 'user.session.start', displayMessage: 'User login to Okta', severity: 'INFO', actor: { id: '00u1a2b3c4d5e6f7g8h9', type: 'User', alternateId: 'ada@example.com' } }] },
    eventTime: '2023-11-14T22:13:20.000Z',
    contentType: 'application/json',
  });
  add('okta', {
    origin: `recipe: the configured Authorization value sent as it is, following ${PRESETS.okta.docs}`,
    secret,
    headers: [JSON_CT, ['Authorization', secret]],
    body,
  });
}

{
  const secret = 'Bearer a0-logstream-token-3f8e2c1d';
  const body = json({
    log_id: '90020231114221320123456789012345678901234567890123',
    data: { date: '2023-11-14T22:13:20.000Z', type: 's', description: 'Successful login', client_id: 'AaiyAPdpYdesoKnqjj8HJqRn4T5titww', client_name: 'Spillway', ip: '203.0.113.7', user_id: 'auth0|6553f2a0c1d2e3f4a5b6c7d8', user_name: 'ada@example.com' },
  });
  add('auth0', {
    origin: `recipe: the log stream's Authorization token sent as it is, following ${PRESETS.auth0.docs}`,
    secret,
    headers: [JSON_CT, ['Authorization', secret]],
    body,
  });
}

{
  const secret = 'SecretClientState-6c1b9f2e';
  const body = json({
    value: [
      {
        subscriptionId: '7f105c7d-2dc5-4530-97cd-4e7ae6534c07',
        subscriptionExpirationDateTime: '2023-11-17T18:23:45.9356913+00:00',
        changeType: 'created',
        resource: "Users/{user-id}/Messages/{message-id}",
        resourceData: { '@odata.type': '#Microsoft.Graph.Message', '@odata.id': "Users/{user-id}/Messages/{message-id}", '@odata.etag': 'W/"CQAAABYAAACQ2fKdhq8oSKEDSVrdi3lRAAAABS/j"', id: '{message-id}' },
        clientState: secret,
        tenantId: '84bd8158-6d4d-4958-8b9f-9d6445542f95',
      },
    ],
  });
  add('microsoft-graph', {
    origin: `recipe: the clientState echoed in the body, following ${PRESETS['microsoft-graph'].docs}`,
    secret,
    headers: [JSON_CT],
    body,
  });
}

// === write ===

const kindOf = (origin) =>
  origin.startsWith('published:') ? 'published' : origin.startsWith('sdk:') ? 'sdk' : origin.includes(', accepted by npm') ? 'sdk-checked recipe' : 'recipe';

/** Pretty JSON with each header pair on one line. */
function format(list) {
  const text = JSON.stringify(list, null, 2).replace(/\[\n\s*("(?:[^"\\]|\\.)*"),\n\s*("(?:[^"\\]|\\.)*")\n\s*\]/g, '[$1, $2]');
  const back = JSON.parse(text);
  check(JSON.stringify(back) === JSON.stringify(list), 'formatting keeps the data');
  return `${text}\n`;
}

fs.mkdirSync(OUT, { recursive: true });
const rows = [];
const counts = {};
for (const [preset, list] of vectors) {
  check(list.length > 0, `a vector for ${preset}`);
  fs.writeFileSync(path.join(OUT, `${preset}.json`), format(list));
  for (const v of list) {
    const kind = kindOf(v.origin);
    counts[kind] = (counts[kind] ?? 0) + 1;
    rows.push(`| ${preset} | ${kind} | ${v.origin.replace(/\|/g, '\\|')} |`);
  }
}
fs.writeFileSync(
  path.join(OUT, 'ORIGINS.md'),
  [
    '# Where each provider vector comes from',
    '',
    'Written by `dev/provider-vectors/generate.mjs` (`cd dev/provider-vectors && npm ci && node generate.mjs`).',
    'One row per vector, in file order. Kinds: **published** (the provider\'s worked example, transcribed),',
    '**sdk** (signed by the provider\'s official SDK), **sdk-checked recipe** (signed with node crypto /',
    'tweetnacl following the docs, then accepted by the provider\'s verify-only SDK), **recipe** (signed with',
    'node crypto following the docs). Every vector was also re-signed from the docs\' recipe by the script.',
    '',
    '| preset | origin kind | source |',
    '| --- | --- | --- |',
    ...rows,
    '',
  ].join('\n'),
);
console.log(`${vectors.size} presets, ${rows.length} vectors:`, counts);
