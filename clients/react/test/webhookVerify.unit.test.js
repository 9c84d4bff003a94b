// webhookVerify.js against the Standard Webhooks reference vector (the appliance's signer, appliance/webhooks.py,
// is checked against the same vector in tests/test_webhooks.py), and the ways a forged delivery looks.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { WebhookVerificationError, verifyRenderWebhook } from '../webhookVerify.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const BODY = '{"test": 2432232314}';
const AT = 1614265330;
const HEADERS = {
  'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  'webhook-timestamp': String(AT),
  'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};
const now = AT * 1000 + 10_000;

test('a genuine delivery verifies (plain object or Headers, several signatures)', async () => {
  assert.deepEqual(await verifyRenderWebhook(SECRET, HEADERS, BODY, { now }), { test: 2432232314 });
  const headers = new Headers({ ...HEADERS, 'webhook-signature': `v1,bm90LWl0 ${HEADERS['webhook-signature']}` });
  assert.deepEqual(await verifyRenderWebhook(SECRET, headers, BODY, { now }), { test: 2432232314 });
});

test('a changed body, id, secret or an old timestamp is refused', async () => {
  const refused = async (...args) => assert.rejects(verifyRenderWebhook(...args), WebhookVerificationError);
  await refused(SECRET, HEADERS, '{"test": 2432232315}', { now });
  await refused(SECRET, { ...HEADERS, 'webhook-id': 'msg_other' }, BODY, { now });
  await refused('whsec_' + btoa('another secret of 24+ bytes!'), HEADERS, BODY, { now });
  await refused(SECRET, HEADERS, BODY, { now: (AT + 301) * 1000 });
  await refused(SECRET, { 'webhook-id': 'x' }, BODY, { now });
});
