// A misbehaving OpenID provider for the end-to-end tests, on 127.0.0.1 only. Each issuer
// http://127.0.0.1:PORT/<mode> answers the authorization request at once and hands out an ID
// token that is wrong in one way:
//   other-key  signed by a key that is not in its published key set
//   wrong-aud  issued for another client
//   expired    expired ten minutes ago
//   bad-nonce  carrying a nonce from another login (a replay)
//   alg-none   unsigned ("alg": "none")
// Prints "listening <base>" once ready.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';

const published = await generateKeyPair('RS256');
const other = await generateKeyPair('RS256');
const jwk = { ...(await exportJWK(published.publicKey)), kid: 'published', alg: 'RS256', use: 'sig' };
const codes = new Map();
const modes = ['other-key', 'wrong-aud', 'expired', 'bad-nonce', 'alg-none'];

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

async function idToken(mode, issuer, clientId, nonce) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    sub: 'rogue-subject', email: 'ana@cert.example', email_verified: true, name: 'Ana',
    nonce: mode === 'bad-nonce' ? 'a-nonce-from-another-login' : nonce,
  };
  const iat = mode === 'expired' ? now - 1200 : now;
  const exp = mode === 'expired' ? now - 600 : now + 300;
  const aud = mode === 'wrong-aud' ? 'another-client' : clientId;
  if (mode === 'alg-none') {
    return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, iss: issuer, aud, iat, exp })}.`;
  }
  const key = mode === 'other-key' ? other.privateKey : published.privateKey;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: 'published' })
    .setIssuer(issuer).setAudience(aud).setIssuedAt(iat).setExpirationTime(exp)
    .sign(key);
}

const server = http.createServer(async (req, res) => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const url = new URL(req.url, base);
  const [, mode, ...rest] = url.pathname.split('/');
  const path = rest.join('/');
  const issuer = `${base}/${mode}`;
  const json = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (!modes.includes(mode)) return json(404, { error: 'unknown mode' });
  if (path === '.well-known/openid-configuration') {
    return json(200, {
      issuer,
      authorization_endpoint: `${issuer}/authorize`,
      token_endpoint: `${issuer}/token`,
      jwks_uri: `${issuer}/jwks`,
      response_types_supported: ['code'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['RS256'],
    });
  }
  if (path === 'jwks') return json(200, { keys: [jwk] });
  if (path === 'authorize') {
    const code = randomUUID();
    codes.set(code, { nonce: url.searchParams.get('nonce'), clientId: url.searchParams.get('client_id') });
    const back = new URL(url.searchParams.get('redirect_uri'));
    back.searchParams.set('code', code);
    back.searchParams.set('state', url.searchParams.get('state'));
    res.writeHead(303, { location: back.toString() });
    return res.end();
  }
  if (path === 'token' && req.method === 'POST') {
    let body = '';
    for await (const chunk of req) body += chunk;
    const code = new URLSearchParams(body).get('code');
    const grant = codes.get(code);
    if (!grant) return json(400, { error: 'invalid_grant' });
    codes.delete(code);
    return json(200, {
      access_token: randomUUID(), token_type: 'Bearer', expires_in: 300,
      id_token: await idToken(mode, issuer, grant.clientId, grant.nonce),
    });
  }
  return json(404, { error: 'not found' });
});

server.listen(0, '127.0.0.1', () => console.log(`listening http://127.0.0.1:${server.address().port}`));
