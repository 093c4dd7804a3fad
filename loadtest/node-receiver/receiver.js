// The receiver a team writes by hand in Node.js, for `make bench` to compare with Spillway's
// ingress on the same load (docs/benchmarks.md, "A receiver written by hand in Node.js"):
// express reads the body, the provider's signature is checked over the raw bytes, the
// event's id is claimed with SET NX in the Redis Cluster (ioredis), the body is produced to
// Kafka with acks=all (kafkajs) and the answer is 202. Nothing else: no metrics, no logs, no
// limits, no commit after the answer. One process, as such receivers are usually run.
//
// Configured by the environment: BROKERS (host:port,...), REDIS_NODES (host:port,...),
// KEY_PREFIX (of its claims), SOURCES (JSON: [{name, scheme, secret, topic}], scheme one of
// standard-webhooks, github, stripe). Listens on 127.0.0.1 on a free port and prints it once
// connected to both engines.
"use strict";

const crypto = require("node:crypto");
const express = require("express");
const Redis = require("ioredis");
const { Kafka, Partitioners, logLevel } = require("kafkajs");

// As long as a sender's retries of one event go on, about: its duplicates are answered 200.
const CLAIM_TTL_MS = 10 * 60 * 1000;
const TOLERANCE_S = 300;

function hmac(key, data, encoding) {
  return crypto.createHmac("sha256", key).update(data).digest(encoding);
}

function equal(a, b) {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

function fresh(timestamp) {
  const t = Number(timestamp);
  return Number.isFinite(t) && Math.abs(Date.now() / 1000 - t) <= TOLERANCE_S;
}

const INVALID = { status: 401, error: "invalid_signature" };
const STALE = { status: 400, error: "stale_timestamp" };

// Each returns { id } when the signature is right, or the answer to give.
const verifiers = {
  "standard-webhooks": (secret) => {
    const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
    return (req) => {
      const id = req.get("webhook-id");
      const ts = req.get("webhook-timestamp");
      const signatures = req.get("webhook-signature") || "";
      if (!id) return INVALID;
      const expected = hmac(key, Buffer.concat([Buffer.from(`${id}.${ts}.`), req.body]), "base64");
      if (!signatures.split(" ").some((s) => s.startsWith("v1,") && equal(s.slice(3), expected))) return INVALID;
      return fresh(ts) ? { id } : STALE;
    };
  },
  github: (secret) => (req) => {
    const id = req.get("x-github-delivery");
    const signature = req.get("x-hub-signature-256") || "";
    if (!id || !equal(signature, `sha256=${hmac(secret, req.body, "hex")}`)) return INVALID;
    return { id };
  },
  stripe: (secret) => (req) => {
    // Stripe sends a v1 per secret while one is rotated: any may match.
    const fields = (req.get("stripe-signature") || "").split(",").map((p) => p.split("=", 2));
    const t = fields.find(([k]) => k === "t")?.[1];
    const v1s = fields.filter(([k]) => k === "v1").map(([, v]) => v);
    if (!t || v1s.length === 0) return INVALID;
    const expected = hmac(secret, Buffer.concat([Buffer.from(`${t}.`), req.body]), "hex");
    if (!v1s.some((v) => equal(v, expected))) return INVALID;
    if (!fresh(t)) return STALE;
    try {
      const id = JSON.parse(req.body).id;
      return id ? { id } : { status: 400, error: "no_event_id" };
    } catch {
      return { status: 400, error: "invalid_json" };
    }
  },
};

async function main() {
  const hostPort = (s) => {
    const [host, port] = s.trim().replace(/^redis:\/\//, "").split(":");
    return { host, port: Number(port) };
  };
  const sources = new Map(
    JSON.parse(process.env.SOURCES).map((s) => [s.name, { ...s, verify: verifiers[s.scheme](s.secret) }]),
  );
  const keyPrefix = process.env.KEY_PREFIX || "";
  const redis = new Redis.Cluster(process.env.REDIS_NODES.split(",").map(hostPort));
  const kafka = new Kafka({
    clientId: "node-receiver",
    brokers: process.env.BROKERS.split(","),
    logLevel: logLevel.NOTHING,
  });
  // The partitioner kafkajs 2 defaults to, named so that it does not warn about the change.
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  await redis.ping();

  const app = express();
  app.disable("x-powered-by");
  app.post("/v1/hooks/:source", express.raw({ type: () => true, limit: "1mb" }), async (req, res) => {
    const source = sources.get(req.params.source);
    if (!source) return res.status(404).json({ error: "unknown_source" });
    // Without a body express leaves an empty object, not a Buffer.
    if (!Buffer.isBuffer(req.body)) return res.status(400).json({ error: "no_body" });
    let key;
    let claimed = false;
    // Everything in the try: express 4 does not catch a rejected handler, and Node ends the
    // process on an unhandled rejection.
    try {
      const verified = source.verify(req);
      if (!verified.id) return res.status(verified.status).json({ error: verified.error });
      key = `${keyPrefix}${source.name}.${verified.id}`;
      claimed = (await redis.set(key, "1", "PX", CLAIM_TTL_MS, "NX")) !== null;
      if (!claimed) return res.status(200).json({ status: "duplicate" });
      await producer.send({ topic: source.topic, acks: -1, messages: [{ key: verified.id, value: req.body }] });
      res.status(202).json({ id: crypto.randomUUID(), status: "accepted" });
    } catch {
      // A claim kept after a failed produce would answer the sender's retry as a duplicate.
      // Released, a produce that timed out after the broker wrote it lets the retry write the
      // event again: this receiver, like most written by hand, does not tell the two apart
      // (Spillway keeps the claim of a record that may have been written).
      if (claimed) await redis.del(key).catch(() => {});
      res.status(503).json({ error: "unavailable" });
    }
  });
  const server = app.listen(0, "127.0.0.1", () => {
    console.log(`127.0.0.1:${server.address().port}`);
  });
  server.keepAliveTimeout = 60_000;
  const stop = () => {
    server.close();
    Promise.allSettled([producer.disconnect(), redis.quit()]).then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(`node receiver: ${e.stack || e}`);
  process.exit(1);
});
