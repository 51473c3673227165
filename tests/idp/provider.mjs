// A real OpenID provider for the service-account tests: oidc-provider, on loopback.
//
// Two issuers share one HTTP server and one key set: /a (the one the service
// trusts) and /b (a "foreign" issuer whose tokens carry a kid the service
// knows, so that only the `iss` check can refuse them). Clients use the
// client-credentials grant; access tokens are JWTs for the resource asked for.
//
// Test-only admin endpoints (never part of a real IdP):
//   POST /admin/rotate {"alg": "RS256"|"ES256", "retire": bool}
//     a new signing key, published first and signing from now on; "retire"
//     drops every older key from the JWKS. Answers {"kid": <new kid>}.
//   GET /admin/stats   {"jwks": <requests to /a/jwks so far>}
//
// Environment: IDP_PORT, IDP_AUDIENCE (our resource), IDP_OTHER_AUDIENCE.
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.IDP_PORT);
const audience = process.env.IDP_AUDIENCE;
const otherAudience = process.env.IDP_OTHER_AUDIENCE;
const base = `http://127.0.0.1:${port}`;

// Each client's roles, put where Keycloak puts them (realm_access.roles).
const ROLES = { pipeline: ['creator'], viewer: ['viewer'], scoped: [], shortlived: ['creator'] };
const SCOPES = 'reco:ingest reco:read';
const CLIENTS = [
  { client_id: 'pipeline', scope: SCOPES },
  { client_id: 'viewer', scope: 'reco:read' },
  { client_id: 'scoped', scope: SCOPES },
  { client_id: 'shortlived', scope: SCOPES },
].map((c) => ({
  ...c,
  client_secret: `${c.client_id}-secret`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
}));

function newKey(alg) {
  const { privateKey } = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg, use: 'sig' };
}

let keys = [newKey('RS256')];
let jwksRequests = 0;

function provider(issuer) {
  const signingAlg = keys[0].alg;
  return new Provider(issuer, {
    clients: CLIENTS,
    scopes: SCOPES.split(' '),
    // Only client-credentials here: no cookie is ever set, but the option must be given.
    cookies: { keys: ['test-only-cookie-key'] },
    jwks: { keys },
    // The newest key first: oidc-provider signs with the first key of the alg.
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => {
          if (resource !== audience && resource !== otherAudience) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: SCOPES,
            audience: resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: client.clientId === 'shortlived' ? 1 : 600,
            jwt: { sign: { alg: signingAlg } },
          };
        },
      },
    },
    extraTokenClaims: (ctx, token) => ({
      realm_access: { roles: ROLES[token.clientId] ?? [] },
    }),
  });
}

let issuers = {};
function build() {
  issuers = {
    '/a': provider(`${base}/a`).callback(),
    '/b': provider(`${base}/b`).callback(),
  };
}
build();

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

async function admin(req, res) {
  if (req.method === 'GET' && req.url === '/admin/stats') {
    return json(res, 200, { jwks: jwksRequests });
  }
  if (req.method === 'POST' && req.url === '/admin/rotate') {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    const { alg = 'RS256', retire = false } = raw ? JSON.parse(raw) : {};
    const key = newKey(alg);
    keys = retire ? [key] : [key, ...keys];
    build();
    return json(res, 200, { kid: key.kid });
  }
  return json(res, 404, { error: 'no such admin endpoint' });
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/admin/')) {
    admin(req, res).catch((err) => json(res, 500, { error: String(err) }));
    return;
  }
  const prefix = req.url.slice(0, 2);
  const target = issuers[prefix];
  if (!target) return json(res, 404, { error: 'unknown issuer' });
  // As Express does for a mounted app: oidc-provider reads its mount path from these.
  req.originalUrl = req.url;
  req.baseUrl = prefix;
  req.url = req.url.slice(2) || '/';
  if (prefix === '/a' && req.url.startsWith('/jwks')) jwksRequests += 1;
  target(req, res);
});

server.listen(port, '127.0.0.1', () => {
  // The fixture waits for this line.
  console.log(`idp listening on ${base}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
