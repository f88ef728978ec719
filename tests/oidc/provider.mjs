// A real OpenID provider for the end-to-end tests (oidc-provider), on 127.0.0.1 only.
// It knows one client and one account, and completes login and consent by itself so a test
// can play the browser without a form. Prints "listening <issuer>" once ready.
import http from 'node:http';
import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};
const redirectUri = env('REDIRECT_URI');
const clientId = env('CLIENT_ID');
const clientSecret = env('CLIENT_SECRET');
const account = { id: env('ACCOUNT_ID'), email: env('ACCOUNT_EMAIL'), name: env('ACCOUNT_NAME') };

let provider;
const server = http.createServer(async (req, res) => {
  try {
    if (req.url.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login') {
        await provider.interactionFinished(req, res, { login: { accountId: account.id } }, { mergeWithLastSubmission: false });
      } else {
        const grant = details.grantId
          ? await provider.Grant.find(details.grantId)
          : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
        grant.addOIDCScope('openid email profile');
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      }
      return;
    }
    provider.callback()(req, res);
  } catch (err) {
    res.statusCode = 500;
    res.end(String(err));
  }
});

server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      response_types: ['code'],
      grant_types: ['authorization_code'],
    }],
    findAccount: (ctx, id) => (id === account.id ? {
      accountId: id,
      claims: () => ({ sub: id, email: account.email, email_verified: true, name: account.name }),
    } : undefined),
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: ['escape-test-only-cookie-key'] },
    pkce: { required: () => true },
  });
  provider.proxy = false;
  console.log(`listening ${issuer}`);
});
