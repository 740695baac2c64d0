// Local OpenID Connect issuer: a Keycloak stand-in for the sts-gateway stack.
//
// Built on oauth2-mock-server (npm, pinned in package-lock.json). What it adds:
//   * issuer URL = Keycloak's realm URL (ISSUER_URL), so `iss` matches the field;
//   * Keycloak-like claims on every token (aud ["shasta","account"], azp, typ,
//     preferred_username, sub, realm_access, resource_access.shasta.roles, groups);
//   * known users only for the password grant (admin, testuser: ["admin"]; user: ["user"]);
//   * a JWKS like Keycloak's: the RS256 signing key(s) (`use: sig`) first, then an
//     RSA-OAEP encryption key (`use: enc`);
//   * discovery that advertises Keycloak's paths (<issuer>/protocol/openid-connect/...);
//   * a loopback-only test-control API on its own port (tests only):
//       POST /control/token   {username, claims, expires_in, kid, unpublished} -> {token, kid}
//       POST /control/tokens  {count, username, claims, ...}                 -> {tokens: [...]}
//       POST /control/rotate  {keep_old: bool, alg, current: bool}             -> {kid, jwks}
//       POST /control/retire  {kid}                                            -> {jwks}
//       POST /control/sign-raw {header_b64, payload_b64, kid}                  -> {token, kid, alg}
//       GET  /control/jwks                                                     -> the JWKS
//
// Configuration (environment): ISSUER_URL, ISSUER_HOST (127.0.0.1), ISSUER_PORT (8081),
// ISSUER_CONTROL_PORT (8082; 0 disables), ISSUER_CLIENT_ID (shasta).
// Passwords are not checked (dev only): any password works for a known user.

import http from 'node:http';
import { constants, createHash, createPrivateKey, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

const ISSUER_URL = process.env.ISSUER_URL || 'https://api-gw-service-nmn.local/keycloak/realms/shasta';
const HOST = process.env.ISSUER_HOST || '127.0.0.1';
const PORT = Number(process.env.ISSUER_PORT || 8081);
const CONTROL_PORT = Number(process.env.ISSUER_CONTROL_PORT ?? 8082);
const CLIENT_ID = process.env.ISSUER_CLIENT_ID || 'shasta';
const TOKEN_TTL = 3600;

// username -> roles in resource_access.<client>.roles
const USERS = {
  admin: ['admin'],
  testuser: ['admin'],
  user: ['user'],
};

// Keycloak's `sub` is a UUID; derive a stable one from the username.
function subFor(username) {
  const h = createHash('sha1').update(`sts-gateway:${username}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function keycloakClaims(username) {
  const roles = USERS[username] ?? [];
  return {
    aud: [CLIENT_ID, 'account'],
    azp: CLIENT_ID,
    typ: 'Bearer',
    sub: subFor(username),
    preferred_username: username,
    name: username,
    email: `${username}@example.invalid`,
    email_verified: false,
    scope: 'openid profile email',
    jti: randomUUID(),
    realm_access: { roles: ['offline_access', 'uma_authorization', ...roles] },
    resource_access: {
      [CLIENT_ID]: { roles: [...roles] },
      account: { roles: ['manage-account', 'view-profile'] },
    },
    groups: roles.includes('admin') ? ['/admins'] : ['/users'],
  };
}

// Apply overrides: a value of null removes the claim.
function applyOverrides(payload, overrides) {
  for (const [k, v] of Object.entries(overrides ?? {})) {
    if (v === null) delete payload[k];
    else payload[k] = v;
  }
}

// Tokens are always signed with the current signing key (the library would otherwise
// round-robin over every key in its store).
class RealmIssuer extends OAuth2Issuer {
  currentKid = undefined;
  async buildToken(opts) {
    return super.buildToken({ ...opts, kid: opts?.kid ?? this.currentKid });
  }
}

const issuer = new RealmIssuer();
issuer.url = ISSUER_URL;
const service = new OAuth2Service(issuer);

let signingKids = []; // published signing keys, current first
const allSigning = new Map(); // kid -> public JWK (also unpublished / retired ones)
let encKey; // public JWK of the `use: enc` key

// The algorithms a signing key may have (oauth2-mock-server's generate() makes RSA keys for these).
const RSA_ALGS = {
  RS256: { hash: 'sha256', pss: false },
  RS384: { hash: 'sha384', pss: false },
  RS512: { hash: 'sha512', pss: false },
  PS256: { hash: 'sha256', pss: true },
  PS384: { hash: 'sha384', pss: true },
  PS512: { hash: 'sha512', pss: true },
};

async function newSigningKey(alg = 'RS256') {
  if (!(alg in RSA_ALGS)) throw new Error(`unsupported alg ${alg}`);
  const jwk = await issuer.keys.generate(alg);
  const { d, p, q, dp, dq, qi, ...pub } = jwk;
  allSigning.set(jwk.kid, { ...pub, use: 'sig' });
  return jwk.kid;
}

function makeEncKey() {
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = publicKey.export({ format: 'jwk' });
  return { kid: `enc-${randomUUID()}`, kty: 'RSA', alg: 'RSA-OAEP', use: 'enc', n: jwk.n, e: jwk.e };
}

function jwks() {
  return { keys: [...signingKids.map((kid) => allSigning.get(kid)), encKey] };
}

// A new signing key of `alg`, published. `current` (the default) makes it the key tokens are
// signed with and lists it first; otherwise it is only published, after the others (tokens for it
// name its kid). keepOld keeps the other published keys.
async function rotate(keepOld, alg = 'RS256', current = true) {
  const kid = await newSigningKey(alg);
  if (!keepOld) signingKids = [kid];
  else signingKids = current ? [kid, ...signingKids] : [...signingKids, kid];
  if (current || !keepOld) issuer.currentKid = kid;
  return kid;
}

// Removes a key from the JWKS (its tokens still verify elsewhere); the current key stays.
function retire(kid) {
  if (kid === issuer.currentKid) throw new Error('cannot retire the current key');
  signingKids = signingKids.filter((k) => k !== kid);
}

// Signs exactly the given header and payload bytes (base64url, as the caller encoded them) with a
// key's algorithm: hostile tokens (duplicate claims, crit) that a JOSE library would not build.
function signRaw(body) {
  const kid = body.kid ?? issuer.currentKid;
  const jwk = issuer.keys.get(kid);
  if (jwk === undefined || !allSigning.has(kid)) throw new Error(`unknown kid ${kid}`);
  const b64url = /^[A-Za-z0-9_-]*$/;
  for (const f of ['header_b64', 'payload_b64']) {
    if (typeof body[f] !== 'string' || !b64url.test(body[f])) throw new Error(`${f}: base64url text required`);
  }
  const { hash, pss } = RSA_ALGS[jwk.alg];
  const key = createPrivateKey({ key: jwk, format: 'jwk' });
  const input = `${body.header_b64}.${body.payload_b64}`;
  const opts = pss ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST } : key;
  const signature = sign(hash, Buffer.from(input, 'ascii'), opts).toString('base64url');
  return { token: `${input}.${signature}`, kid, alg: jwk.alg };
}

// Password grant: unknown users are refused like Keycloak does.
service.on('beforeTokenSigning', (token, req) => {
  const username = req.body?.username ?? req.body?.client_id ?? 'service-account';
  const isIdToken = typeof token.payload.aud === 'string'; // set by the library for id_token
  Object.assign(token.payload, keycloakClaims(username));
  token.payload.exp = token.payload.iat + TOKEN_TTL;
  if (isIdToken) {
    token.payload.aud = CLIENT_ID;
    token.payload.typ = 'ID';
  }
});
service.on('beforeResponse', (resp, req) => {
  const b = req.body ?? {};
  if (b.grant_type === 'password' && !(b.username in USERS)) {
    resp.statusCode = 401;
    resp.body = { error: 'invalid_grant', error_description: 'Invalid user credentials' };
  } else if (b.client_id !== undefined && b.client_id !== CLIENT_ID) {
    resp.statusCode = 401;
    resp.body = { error: 'invalid_client', error_description: 'Invalid client or Invalid client credentials' };
  }
});
// Discovery advertises Keycloak's paths (served through the gateway's /keycloak/ routes).
service.on('beforeWellKnownOpenIdConfiguration', (resp) => {
  const oidc = `${ISSUER_URL}/protocol/openid-connect`;
  Object.assign(resp.body, {
    token_endpoint: `${oidc}/token`,
    jwks_uri: `${oidc}/certs`,
    authorization_endpoint: `${oidc}/auth`,
    userinfo_endpoint: `${oidc}/userinfo`,
    end_session_endpoint: `${oidc}/logout`,
    introspection_endpoint: `${oidc}/token/introspect`,
    revocation_endpoint: `${oidc}/revoke`,
  });
});

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString('utf8');
  return raw.trim() === '' ? {} : JSON.parse(raw);
}

// Main port: the library's handler, except /jwks which is ours (it holds the enc key).
const mainServer = http.createServer({ noDelay: true }, (req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname.replace(/\/$/, '');
  if (req.method === 'GET' && path === '/jwks') return sendJson(res, 200, jwks());
  return service.requestHandler(req, res);
});

async function controlToken(body) {
  const username = body.username ?? 'admin';
  const expiresIn = body.expires_in ?? TOKEN_TTL;
  let kid = body.kid ?? issuer.currentKid;
  if (body.unpublished) kid = await newSigningKey(); // a key the JWKS never shows
  if (!allSigning.has(kid)) throw new Error(`unknown kid ${kid}`);
  const token = await issuer.buildToken({
    kid,
    expiresIn,
    scopesOrTransform: (header, payload) => {
      Object.assign(payload, keycloakClaims(username));
      payload.exp = payload.iat + expiresIn;
      applyOverrides(payload, body.claims);
      applyOverrides(header, body.header);
    },
  });
  return { token, kid };
}

const controlServer = http.createServer({ noDelay: true }, async (req, res) => {
  try {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method === 'POST' && path === '/control/token') return sendJson(res, 200, await controlToken(await readJson(req)));
    if (req.method === 'POST' && path === '/control/tokens') {
      // Many distinct valid tokens (a unique jti each), for benchmarks that must miss every cache.
      const body = await readJson(req);
      const count = Math.min(Number(body.count ?? 1), 50000);
      const tokens = [];
      for (let i = 0; i < count; i++) {
        const claims = Object.assign({ jti: `bench-${Date.now()}-${i}` }, body.claims ?? {});
        tokens.push((await controlToken({ ...body, claims })).token);
      }
      return sendJson(res, 200, { tokens });
    }
    if (req.method === 'POST' && path === '/control/rotate') {
      const body = await readJson(req);
      const kid = await rotate(Boolean(body.keep_old), body.alg ?? 'RS256', body.current ?? true);
      return sendJson(res, 200, { kid, jwks: jwks() });
    }
    if (req.method === 'POST' && path === '/control/retire') {
      retire((await readJson(req)).kid);
      return sendJson(res, 200, { jwks: jwks() });
    }
    if (req.method === 'POST' && path === '/control/sign-raw') return sendJson(res, 200, signRaw(await readJson(req)));
    if (req.method === 'GET' && path === '/control/jwks') return sendJson(res, 200, jwks());
    if (req.method === 'GET' && path === '/control/healthz') return sendJson(res, 200, { status: 'ok' });
    return sendJson(res, 404, { error: 'not found' });
  } catch (err) {
    return sendJson(res, 400, { error: String(err?.message ?? err) });
  }
});

function listen(server, port) {
  return new Promise((resolve, reject) => server.listen(port, HOST).once('listening', resolve).once('error', reject));
}

encKey = makeEncKey();
await rotate(false);
await listen(mainServer, PORT);
if (CONTROL_PORT > 0) await listen(controlServer, CONTROL_PORT);
console.log(`issuer ${ISSUER_URL} on http://${HOST}:${PORT}` + (CONTROL_PORT > 0 ? `, control on http://${HOST}:${CONTROL_PORT}` : ''));

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    mainServer.close();
    controlServer.close();
    process.exit(0);
  });
}
