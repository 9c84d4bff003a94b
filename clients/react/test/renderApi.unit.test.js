// renderApi.js timing and fault handling against a small local HTTP stub (the paths the real appliance cannot be
// made to take on demand: answers dropped mid-poll, 5xx from a proxy, an exact Retry-After). The behaviour
// against the real appliance is in appliance.test.js.
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { swatchesToSurfaces } from '../aiService.example.js';
import {
  RenderApiError, STAGE_LABELS, SURFACES, getRenderJob, newIdempotencyKey, pollRenderJob, renderApiBaseUrl, submitRenderJob,
  stageLabel, watchRenderJob,
} from '../renderApi.js';

let server;
let baseUrl;
/** The script of answers: each entry (req, res) => void, taken in order; then `fallback`. */
let script = [];
let fallback = null;
/** {method, url, headers, at} of every request. */
let seen = [];

before(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body, at: Date.now() });
      const answer = script.shift() || fallback;
      answer(req, res);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  baseUrl = `http://127.0.0.1:${server.address().port}`;
});

after(() => new Promise((r) => { server.closeAllConnections(); server.close(r); }));

const reply = (status, body, headers = {}) => (req, res) => {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};
const drop = () => (req, res) => res.socket.destroy();
const hang = () => () => {};
const created = (id = 'job-1') => reply(201,
  { job_id: id, status: 'processing', poll_url: `${baseUrl}/render/jobs/${id}` });
const processing = (stage, progress) => reply(200, { job_id: 'job-1', status: 'processing', stage, progress });
const completed = () => reply(200, { job_id: 'job-1', status: 'completed', result_url: `${baseUrl}/results/x.png` });
const queueFull = (seconds) => reply(503, { error: 'queue_full', retry_after: seconds },
  { 'Retry-After': String(seconds) });

function reset(steps, otherwise = reply(500, { error: 'unexpected' })) {
  script = steps;
  fallback = otherwise;
  seen = [];
}

async function rejectsWith(promise, code) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof RenderApiError, String(err && err.stack));
    assert.equal(err.errorCode, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

const input = { imageUrl: 'http://photos.example/house.jpg', textureUrl: '#AABBCC' };

test('503 queue_full: each retry waits its Retry-After and sends the same Idempotency-Key', async () => {
  reset([queueFull(1), queueFull(1), created()]);
  const retries = [];
  const t0 = Date.now();
  const out = await submitRenderJob(input, { baseUrl, onRetry: (r) => retries.push(r) });
  assert.equal(out.jobId, 'job-1');
  assert.equal(seen.length, 3);
  assert.ok(seen[1].at - seen[0].at >= 990 && seen[1].at - seen[0].at < 2000, `${seen[1].at - seen[0].at} ms`);
  assert.ok(seen[2].at - seen[1].at >= 990 && seen[2].at - seen[1].at < 2000);
  assert.ok(Date.now() - t0 >= 1980);
  const keys = seen.map((r) => r.headers['idempotency-key']);
  assert.ok(keys[0] && keys.every((k) => k === keys[0]), keys.join(' '));
  assert.equal(out.idempotencyKey, keys[0]);
  assert.deepEqual(retries.map((r) => [r.reason, r.delayMs, r.httpStatus]), [['queue_full', 1000, 503],
    ['queue_full', 1000, 503]]);
  assert.deepEqual(JSON.parse(seen[0].body), { image_url: input.imageUrl, texture_url: '#AABBCC' });
});

test('503 queue_full: gives up after maxAttempts with queue_full and the Retry-After', async () => {
  reset([], queueFull(0));
  const err = await rejectsWith(submitRenderJob(input, { baseUrl, maxAttempts: 3 }), 'queue_full');
  assert.equal(seen.length, 3);
  assert.equal(err.retryAfterMs, 0);
  assert.equal(err.httpStatus, 503);
});

test('submit: a dropped connection and a 502 are retried with back-off, same key', async () => {
  reset([drop(), reply(502, { error: 'bad gateway' }), created()]);
  const retries = [];
  const out = await submitRenderJob(input, { baseUrl, idempotencyKey: 'k-1', onRetry: (r) => retries.push(r) });
  assert.equal(out.jobId, 'job-1');
  assert.deepEqual(retries.map((r) => [r.reason, r.delayMs]), [['network_error', 500], ['http_error', 1000]]);
  assert.ok(seen.every((r) => r.headers['idempotency-key'] === 'k-1'));
});

test('submit: network errors give up after maxNetworkRetries', async () => {
  reset([], drop());
  const err = await rejectsWith(submitRenderJob(input, { baseUrl, maxNetworkRetries: 1 }), 'network_error');
  assert.equal(seen.length, 2);
  assert.match(err.errorMessage, /cors_origins/);
});

test('submit: 400 and 401 are not retried', async () => {
  reset([reply(400, { error: 'validation_failed', details: { image_url: 'required' } })]);
  const bad = await rejectsWith(submitRenderJob({}, { baseUrl }), 'validation_failed');
  assert.deepEqual(bad.details, { image_url: 'required' });
  reset([reply(401, { error: 'unauthorized', message: 'send the API key' })]);
  await rejectsWith(submitRenderJob(input, { baseUrl, apiKey: 'wrong' }), 'unauthorized');
  assert.equal(seen.length, 1);
  assert.equal(seen[0].headers.authorization, 'Bearer wrong');
});

test('submit: surfaces go out as the API\'s entries (camelCase in, snake_case out, absent fields left out)', async () => {
  reset([created()]);
  await submitRenderJob({ ...input, surfaces: [
    { surface: 'roof', textureUrl: 'http://photos.example/slate.jpg', swatchWidthM: 1.5,
      maskUrl: 'http://photos.example/roof.png' },
    { surface: 'trim', textureUrl: '#F4F1EA' },
    { surface: 'door', texture_url: '#8B1A1A' }] }, { baseUrl });
  assert.deepEqual(JSON.parse(seen[0].body).surfaces, [
    { surface: 'roof', texture_url: 'http://photos.example/slate.jpg', swatch_width_m: 1.5,
      mask_url: 'http://photos.example/roof.png' },
    { surface: 'trim', texture_url: '#F4F1EA' },
    { surface: 'door', texture_url: '#8B1A1A' }]);
  reset([created()]);
  await submitRenderJob(input, { baseUrl });
  assert.equal('surfaces' in JSON.parse(seen[0].body), false);
  assert.deepEqual(SURFACES, ['roof', 'wall', 'trim', 'garage_door', 'door']);
});

test('swatchesToSurfaces: the first swatch (or the one marked wall) is the wall, the rest by their surface', () => {
  const brick = { id: 'b', color: '#AA0000', url: 'http://x/brick.jpg' };
  assert.deepEqual(swatchesToSurfaces([brick, { id: 'alt', color: '#00AA00' }]),
    { textureUrl: 'http://x/brick.jpg', surfaces: [] });
  assert.deepEqual(swatchesToSurfaces([
    { id: 'r', url: 'http://x/slate.jpg', surface: 'roof', swatch_width_m: 1.2 },
    { id: 'p', color: ' #5a6b7c ' },
    { id: 't', color: '#F4F1EA', surface: 'trim' },
    { id: 'n', name: 'no material', surface: 'door' },
  ]), { textureUrl: '#5a6b7c', surfaces: [
    { surface: 'roof', textureUrl: 'http://x/slate.jpg', swatchWidthM: 1.2 },
    { surface: 'trim', textureUrl: '#F4F1EA' }] });
  assert.deepEqual(swatchesToSurfaces([{ id: 'a', color: '#111111' }, { id: 'w', color: '#222222', surface: 'wall' }]),
    { textureUrl: '#222222', surfaces: [] });
  assert.deepEqual(swatchesToSurfaces([]), { textureUrl: null, surfaces: [] });
});

test('abort while waiting out a Retry-After rejects at once with an AbortError', async () => {
  reset([queueFull(30)]);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 100);
  const t0 = Date.now();
  const err = await rejectsWith(submitRenderJob(input, { baseUrl, signal: controller.signal }), 'aborted');
  assert.equal(err.name, 'AbortError');
  assert.ok(Date.now() - t0 < 1000);
});

test('poll: backs off on 5xx and dropped answers, resets when progress moves, reports stage/progress', async () => {
  reset([reply(500, { error: 'boom' }), drop(), processing('segment', 0.1), processing('segment', 0.1),
    processing('segment', 0.1), processing('geometry', 0.45), completed()]);
  const progress = [];
  const out = await pollRenderJob('job-1', { baseUrl, intervalMs: 200, maxIntervalMs: 2000, backoffFactor: 2,
    onProgress: (p) => progress.push([p.stage, p.progress]) });
  assert.deepEqual(out, { status: 'completed', resultUrl: `${baseUrl}/results/x.png`, jobId: 'job-1',
    job: { job_id: 'job-1', status: 'completed', result_url: `${baseUrl}/results/x.png` } });
  assert.deepEqual(progress, [['segment', 0.1], ['segment', 0.1], ['segment', 0.1], ['geometry', 0.45],
    ['completed', 1]]);
  const gaps = seen.slice(1).map((r, i) => r.at - seen[i].at);
  // after 500: 400 (doubled); after the drop: 800; segment: 200 (moved); same: 400, 800; geometry moved: 200
  const expected = [400, 800, 200, 400, 800, 200];
  gaps.forEach((gap, i) => assert.ok(gap >= expected[i] - 10 && gap < expected[i] + 190,
    `gap ${i}: ${gap} ms, expected ${expected[i]} (all: ${gaps})`));
});

test('poll: a failed job rejects with its error_code and error_message', async () => {
  reset([reply(200, { job_id: 'job-1', status: 'failed', error_code: 'download_failed', error_message: 'HTTP 404' })]);
  const err = await rejectsWith(pollRenderJob('job-1', { baseUrl }), 'download_failed');
  assert.equal(err.errorMessage, 'HTTP 404');
  assert.equal(err.jobId, 'job-1');
  assert.equal(err.clientTimeout, false);
});

test('poll: timeoutMs bounds the whole wait, even when the appliance never answers', async () => {
  reset([], hang());
  const t0 = Date.now();
  const err = await rejectsWith(pollRenderJob('job-1', { baseUrl, timeoutMs: 500 }), 'timeout');
  const took = Date.now() - t0;
  assert.ok(took >= 490 && took < 1200, `${took} ms`);
  assert.equal(err.clientTimeout, true);
  assert.equal(err.cause.errorCode, 'network_error');
});

test('poll: 404 is job_not_found at once', async () => {
  reset([reply(404, { error: 'job_not_found' })]);
  await rejectsWith(pollRenderJob('nope', { baseUrl }), 'job_not_found');
  assert.equal(seen.length, 1);
});

test('base URL: per call, else VITE_RENDER_API_URL from the environment under Node, else config_error', async () => {
  delete process.env.VITE_RENDER_API_URL;
  assert.throws(() => renderApiBaseUrl(), (err) => err.errorCode === 'config_error'
    && /VITE_RENDER_API_URL/.test(err.errorMessage));
  await rejectsWith(getRenderJob('job-1'), 'config_error');
  process.env.VITE_RENDER_API_URL = `${baseUrl}/`;
  try {
    assert.equal(renderApiBaseUrl(), baseUrl);
    reset([processing('queued', 0)]);
    assert.equal((await getRenderJob('job-1')).stage, 'queued');
    assert.equal(seen[0].url, '/render/jobs/job-1');
    assert.equal(renderApiBaseUrl('http://other:1/'), 'http://other:1');
  } finally {
    delete process.env.VITE_RENDER_API_URL;
  }
});

test('newIdempotencyKey: a UUID v4, also where crypto.randomUUID is missing (plain-http pages)', () => {
  const v4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  assert.match(newIdempotencyKey(), v4);
  const real = Object.getOwnPropertyDescriptor(globalThis, 'crypto');
  Object.defineProperty(globalThis, 'crypto', {
    configurable: true, value: { getRandomValues: (a) => webcrypto.getRandomValues(a) }, // no randomUUID
  });
  try {
    const keys = new Set(Array.from({ length: 50 }, () => newIdempotencyKey()));
    assert.equal(keys.size, 50);
    for (const k of keys) assert.match(k, v4);
  } finally {
    Object.defineProperty(globalThis, 'crypto', real);
  }
});

/** An event stream: each step [event, body] is written `gapMs` apart; then the stream ends (or the socket drops). */
const stream = (steps, { gapMs = 50, then = 'end' } = {}) => (req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store' });
  res.write(': ping\r\n\r\n');
  let i = 0;
  const next = () => {
    if (i >= steps.length) {
      if (then === 'drop') res.socket.destroy();
      else if (then === 'end') res.end();
      return; // 'hang': the stream stays open

    }
    const [event, body] = steps[i];
    i += 1;
    res.write(`event: ${event}\r\nid: ${i}\r\ndata: ${JSON.stringify(body)}\r\n\r\n`);
    setTimeout(next, gapMs);
  };
  next();
};
const job = (extra) => ({ job_id: 'job-1', status: 'processing', ...extra });

test('watch: follows the event stream to the result, with the API key, without polling', async () => {
  const done = { job_id: 'job-1', status: 'completed', result_url: `${baseUrl}/results/x.png` };
  reset([stream([['progress', job({ stage: 'queued', progress: 0, queue_position: 1 })],
    ['progress', job({ stage: 'queued', progress: 0, queue_position: 0 })],
    ['progress', job({ stage: 'segment', progress: 0.1 })], ['progress', job({ stage: 'project', progress: 0.6 })],
    ['completed', done]], { then: 'hang' })]);
  const progress = [];
  const out = await watchRenderJob('job-1', { baseUrl, apiKey: 'k', onProgress: (p) => progress.push(
    [p.stage, p.progress, p.queuePosition]) });
  assert.deepEqual(out, { status: 'completed', resultUrl: done.result_url, jobId: 'job-1', job: done });
  assert.deepEqual(progress, [['queued', 0, 1], ['queued', 0, 0], ['segment', 0.1, null], ['project', 0.6, null],
    ['completed', 1, null]]);
  assert.deepEqual(seen.map((r) => r.url), ['/render/jobs/job-1/events']);
  assert.equal(seen[0].headers.authorization, 'Bearer k');
  assert.equal(seen[0].headers.accept, 'text/event-stream');
});

test('watch: a failed event rejects with the job\'s error_code', async () => {
  reset([stream([['progress', job({ stage: 'segment', progress: 0.1 })],
    ['failed', { job_id: 'job-1', status: 'failed', error_code: 'timeout', error_message: 'segment took too long' }]])]);
  const err = await rejectsWith(watchRenderJob('job-1', { baseUrl }), 'timeout');
  assert.equal(err.errorMessage, 'segment took too long');
  assert.equal(seen.length, 1);
});

test('watch: an appliance without the stream (404 page) is polled instead', async () => {
  reset([(req, res) => { res.writeHead(404, { 'Content-Type': 'text/html' }); res.end('<h1>404</h1>'); },
    processing('segment', 0.1), completed()]);
  const out = await watchRenderJob('job-1', { baseUrl, intervalMs: 50 });
  assert.equal(out.resultUrl, `${baseUrl}/results/x.png`);
  assert.deepEqual(seen.map((r) => r.url), ['/render/jobs/job-1/events', '/render/jobs/job-1', '/render/jobs/job-1']);
});

test('watch: a stream that breaks mid-job falls back to polling for the time left', async () => {
  reset([stream([['progress', job({ stage: 'segment', progress: 0.1 })]], { then: 'drop' }), completed()]);
  const progress = [];
  const out = await watchRenderJob('job-1', { baseUrl, intervalMs: 50, onProgress: (p) => progress.push(p.stage) });
  assert.equal(out.status, 'completed');
  assert.deepEqual(progress, ['segment', 'completed']);
  assert.deepEqual(seen.map((r) => r.url), ['/render/jobs/job-1/events', '/render/jobs/job-1']);
});

test('watch: timeoutMs bounds a stream that never ends; abort stops it at once', async () => {
  reset([stream([['progress', job({ stage: 'segment', progress: 0.1 })]], { then: 'hang' })], hang());
  const t0 = Date.now();
  // (the stream stays open: only the deadline ends it; the poll that follows has no time left)
  const err = await rejectsWith(watchRenderJob('job-1', { baseUrl, timeoutMs: 500 }), 'timeout');
  assert.ok(Date.now() - t0 < 1200, `${Date.now() - t0} ms`);
  assert.equal(err.clientTimeout, true);
  reset([stream([['progress', job({ stage: 'segment', progress: 0.1 })]], { then: 'hang' })]);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 150);
  const aborted = await rejectsWith(watchRenderJob('job-1', { baseUrl, signal: controller.signal }), 'aborted');
  assert.equal(aborted.name, 'AbortError');
});

test('submit: webhookUrl and webhookEvents go in the body as webhook_url and webhook_events', async () => {
  reset([created()]);
  await submitRenderJob({ ...input, webhookUrl: 'https://backend.example/hook', webhookEvents: ['completed'] },
    { baseUrl });
  assert.deepEqual(JSON.parse(seen[0].body), { image_url: input.imageUrl, texture_url: '#AABBCC',
    webhook_url: 'https://backend.example/hook', webhook_events: ['completed'] });
});


test('stage labels: every stage the appliance reports has words for a person; an unknown one shows itself', () => {
  for (const stage of ['queued', 'starting', 'downloading', 'segment', 'geometry', 'project', 'refine', 'uploading']) {
    assert.ok(STAGE_LABELS[stage] && STAGE_LABELS[stage] !== stage, stage);
    assert.equal(stageLabel(stage), STAGE_LABELS[stage]);
  }
  assert.equal(stageLabel('geometry'), 'Measuring the walls');
  assert.equal(stageLabel('a-new-stage'), 'a-new-stage');
  assert.equal(stageLabel(undefined), '');
  assert.throws(() => { 'use strict'; STAGE_LABELS.queued = 'x'; });
});
