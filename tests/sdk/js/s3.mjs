// An S3 program that knows nothing of the gateway, on the AWS SDK for JavaScript v3: the default
// credential chain and endpoint come from the environment only (docs/sdk-credentials.md).
// Commands as JSON lines on stdin, one JSON answer line each (the protocol of the boto3 client in
// tests/e2e/test_credentials.py):
//   {"op": "create"|"put"|"get"|"list", "bucket", "key", "body"}  S3 calls
//   {"op": "key"}          the access key id the next call signs with (refreshing if due)
//   {"op": "advance", "seconds": N}  moves this process's clock forward by N s, so credentials
//                          minted for 900 s enter the SDK's 5-minute refresh window
import { readFileSync } from "node:fs";
import readline from "node:readline";
import {
  S3Client,
  CreateBucketCommand,
  PutObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
} from "@aws-sdk/client-s3";

const RealDate = Date;
let shiftMs = 0;
class ShiftedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + shiftMs);
    else super(...args);
  }
  static now() {
    return RealDate.now() + shiftMs;
  }
}
globalThis.Date = ShiftedDate;

const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

let s3;
try {
  s3 = new S3Client({});
} catch (e) {
  say({ op: "client", error: e.name, message: String(e.message) });
  process.exit(3);
}
const pkg = new URL("./node_modules/@aws-sdk/client-s3/package.json", import.meta.url);
say({ op: "client", sdk: JSON.parse(readFileSync(pkg, "utf8")).version });

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  const cmd = JSON.parse(line);
  const out = { op: cmd.op };
  try {
    if (cmd.op === "create") {
      await s3.send(new CreateBucketCommand({ Bucket: cmd.bucket }));
    } else if (cmd.op === "put") {
      await s3.send(new PutObjectCommand({ Bucket: cmd.bucket, Key: cmd.key, Body: cmd.body }));
    } else if (cmd.op === "get") {
      const r = await s3.send(new GetObjectCommand({ Bucket: cmd.bucket, Key: cmd.key }));
      out.body = await r.Body.transformToString();
    } else if (cmd.op === "list") {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: cmd.bucket }));
      out.keys = (r.Contents ?? []).map((o) => o.Key);
    } else if (cmd.op === "key") {
      const c = await s3.config.credentials();
      out.key = c.accessKeyId;
      out.expiration = c.expiration ? c.expiration.toISOString() : null;
    } else if (cmd.op === "advance") {
      shiftMs += cmd.seconds * 1000;
    } else {
      out.error = "unknown op";
    }
  } catch (e) {
    out.error = e.name ?? "Error";
    out.message = String(e.message).slice(0, 500);
  }
  say(out);
}
