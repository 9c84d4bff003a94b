/**
 * webhookVerify.js: check that a webhook delivery really comes from the render appliance (Standard Webhooks
 * signature: `webhook-signature: v1,<base64 HMAC-SHA256 of "webhook-id.webhook-timestamp.body">`).
 *
 * Plain ES module, no dependencies, WebCrypto only: runs in a Supabase Edge Function (Deno), Node 20+, workers.
 * Copy it next to the function (see README.md "Webhooks").
 *
 *   const body = await req.text();                       // the exact bytes, before any JSON parsing
 *   const delivery = await verifyRenderWebhook(secret, req.headers, body);   // throws WebhookVerificationError
 *
 * @module webhookVerify
 */

export class WebhookVerificationError extends Error {
  constructor(message) {
    super(message);
    this.name = 'WebhookVerificationError';
  }
}

const encoder = new TextEncoder();

function base64ToBytes(text) {
  const bin = atob(text);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function bytesToBase64(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Compare without an early exit (the time taken does not tell how much of a guess was right). */
function sameText(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i += 1) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * @param {string} secret  the appliance's `[webhooks] secret` ("whsec_<base64>")
 * @param {Headers|Record<string, string>} headers  the request's headers
 * @param {string} body  the raw request body
 * @param {{toleranceSeconds?: number, now?: number}} [opts]  reject timestamps further than this from now (300 s)
 * @returns {Promise<object>} the delivery: the job's poll body plus `event`, `delivery_id`, `timestamp`
 */
export async function verifyRenderWebhook(secret, headers, body, { toleranceSeconds = 300, now } = {}) {
  const get = (name) => (typeof headers.get === 'function' ? headers.get(name) : headers[name]);
  const id = get('webhook-id');
  const timestamp = get('webhook-timestamp');
  const signatures = get('webhook-signature');
  if (!id || !timestamp || !signatures) throw new WebhookVerificationError('missing webhook headers');
  const seconds = Number(timestamp);
  const nowSeconds = (now ?? Date.now()) / 1000;
  if (!Number.isInteger(seconds) || Math.abs(nowSeconds - seconds) > toleranceSeconds) {
    throw new WebhookVerificationError('timestamp too old or too new (a replay?)');
  }
  const key = await crypto.subtle.importKey('raw', base64ToBytes(secret.replace(/^whsec_/, '')),
    { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const mac = await crypto.subtle.sign('HMAC', key, encoder.encode(`${id}.${timestamp}.${body}`));
  const expected = bytesToBase64(new Uint8Array(mac));
  const ok = signatures.split(' ').some((entry) => {
    const [version, signature] = entry.split(',');
    return version === 'v1' && signature !== undefined && sameText(signature, expected);
  });
  if (!ok) throw new WebhookVerificationError('no matching signature');
  return JSON.parse(body);
}
