/**
 * renderApi.js: a thin client for the render appliance's JSON job API.
 *
 * Plain ES module, no dependencies; runs in browsers (Vite, CRA, Next) and in Node 18+ (global fetch).
 * Copy it into the app (e.g. `src/api/renderApi.js`) and set `VITE_RENDER_API_URL` (the appliance's URL as the
 * browser reaches it, e.g. `http://render-box.local:8080`); or call `configureRenderApi({baseUrl, apiKey})`.
 *
 *   const { jobId } = await submitRenderJob({ imageUrl, textureUrl, projectId, userId });
 *   const { resultUrl } = await pollRenderJob(jobId, { onProgress: ({ stage, progress }) => ... });
 *   const { resultUrl } = await watchRenderJob(jobId, { onProgress });  // the same, pushed by the appliance
 *                                                                       // (server-sent events; polls without them)
 *
 * Every failure is a `RenderApiError` with `errorCode` and `errorMessage`:
 *   the job's own failure (from the appliance):  download_failed | pipeline_error | upload_failed |
 *                                                validation_failed | timeout | canceled
 *   the request failed:                          validation_failed (HTTP 400; `details` names the fields) |
 *                                                unauthorized (401) | idempotency_conflict (409) |
 *                                                queue_full (503 after the retries) | job_not_found (404) |
 *                                                network_error (unreachable, or refused by CORS) | http_error
 *   this client:                                 timeout (pollRenderJob gave up after `timeoutMs`;
 *                                                `clientTimeout: true`, the job may still be running) |
 *                                                aborted (the AbortSignal fired; `name` is "AbortError") |
 *                                                config_error (no base URL)
 *
 * @module renderApi
 */

/**
 * @typedef {object} RenderOptions  The appliance's `options` object (all optional).
 * @property {number} [real_world_scale]       how many times the swatch repeats across the widest wall (1-400, 24)
 * @property {boolean} [enable_refinement]     diffusion refinement (needs the GPU model set, else pipeline_error)
 * @property {number} [refinement_seed]
 * @property {number} [stage_timeout_seconds]  per-stage time limit; exceeded -> the job fails with "timeout"
 * @property {number} [swatch_width_m]         real width of the swatch image in metres (0.05-20): the tile size then
 *                                             comes from the wall's measured scale (doors, windows);
 *                                             real_world_scale is the fallback when the photo has no such cue
 */

/**
 * @typedef {object} RenderJobInput
 * @property {string} imageUrl        the house photo, an http(s) URL the appliance can download
 * @property {string} textureUrl      the swatch image URL, or a paint colour "#RRGGBB"
 * @property {string} [projectId]     UUID; needs userId
 * @property {string} [userId]        UUID
 * @property {string} [maskUrl]       optional paint mask (same size as the photo, white = paint)
 * @property {RenderOptions} [options]
 * @property {SurfaceInput[]} [surfaces]  more parts of the house, each with its own material (textureUrl is the wall)
 * @property {string} [webhookUrl]    the appliance POSTs the job's events there, signed (see README "Webhooks")
 * @property {Array<'completed'|'failed'|'progress'>} [webhookEvents]  default completed and failed
 */

/**
 * @typedef {object} SurfaceInput  One more surface of the house (`surfaces` of the job API).
 * @property {'roof'|'trim'|'door'|'garage_door'|'wall'} surface  trim includes shutters; "wall" only repeats the
 *                                    top-level textureUrl (the appliance refuses a different one)
 * @property {string} textureUrl      this surface's swatch image URL, or a paint colour "#RRGGBB"
 * @property {number} [swatchWidthM]  real width of this swatch in metres (0.05-20)
 * @property {string} [maskUrl]       this surface's own mask (same size as the photo, white = paint)
 */

/**
 * What to show a person for a job's `stage` (the API's values, in running order); the operator console uses the
 * same words.
 */
export const STAGE_LABELS = Object.freeze({
  queued: 'Waiting in line', starting: 'Starting', downloading: 'Fetching the photo and swatch',
  segment: 'Finding the walls', geometry: 'Measuring the walls', project: 'Applying the material',
  refine: 'Refining the render', uploading: 'Saving the result', completed: 'Done',
});

/** A person's words for a stage (an unknown stage: itself, so a newer appliance never shows a blank). */
export function stageLabel(stage) {
  return STAGE_LABELS[stage] || String(stage || '');
}

/** The surfaces a job can paint, back to front (the order the appliance composites them in). */
export const SURFACES = Object.freeze(['roof', 'wall', 'trim', 'garage_door', 'door']);

/**
 * @typedef {object} RequestOptions
 * @property {string} [baseUrl]        overrides configureRenderApi / VITE_RENDER_API_URL
 * @property {string} [apiKey]         sent as "Authorization: Bearer <apiKey>"
 * @property {AbortSignal} [signal]
 * @property {number} [requestTimeoutMs=30000]  one HTTP request's time limit
 */

/**
 * @typedef {object} RetryInfo
 * @property {number} attempt          the attempt that failed (1 = the first request)
 * @property {'queue_full'|'network_error'|'http_error'} reason
 * @property {number} delayMs          how long the client waits before the next attempt
 * @property {number|null} httpStatus
 * @property {RenderApiError} error
 */

/**
 * @typedef {RequestOptions & {
 *   idempotencyKey?: string,
 *   maxAttempts?: number,
 *   maxNetworkRetries?: number,
 *   maxQueueWaitMs?: number,
 *   onRetry?: (info: RetryInfo) => void
 * }} SubmitOptions
 * idempotencyKey: sent as Idempotency-Key on every attempt (default: a fresh random key per call);
 * maxAttempts (8): requests in all; maxNetworkRetries (2): retries after a network error or a 5xx other than 503;
 * maxQueueWaitMs (120000): how long to keep retrying a 503 queue_full (its Retry-After honoured) before giving up.
 */

/**
 * @typedef {object} SubmitResult
 * @property {string} jobId
 * @property {string} pollUrl          as the appliance writes it (its public_base_url); pollRenderJob uses baseUrl
 * @property {string} idempotencyKey   the key sent (reuse it to resubmit the same job safely)
 * @property {boolean} replayed        true when the appliance answered with a job created earlier under this key
 */

/**
 * @typedef {object} Progress
 * @property {string} stage            queued | starting | downloading | segment | geometry | project | refine |
 *                                     uploading | completed
 * @property {number} progress         0..1
 * @property {number|null} queuePosition  jobs ahead while queued
 * @property {object} job              the job as the appliance shows it
 */

/**
 * @typedef {RequestOptions & {
 *   intervalMs?: number,
 *   maxIntervalMs?: number,
 *   backoffFactor?: number,
 *   timeoutMs?: number,
 *   onProgress?: (progress: Progress) => void
 * }} PollOptions
 * intervalMs (1000): the first delay, and the delay again whenever stage or progress moved;
 * maxIntervalMs (5000): the delay grows by backoffFactor (1.5) while nothing moves, and doubles after a network
 * error or a 5xx (a Retry-After is honoured), up to this; timeoutMs (600000): give up (errorCode "timeout").
 */

/**
 * @typedef {object} PollResult
 * @property {'completed'} status
 * @property {string} resultUrl        the rendered PNG
 * @property {string} jobId
 * @property {object} job              the finished job (timings, backends, warnings, ...)
 */

/** The job failure codes the appliance reports (GET /render/jobs/{id} -> error_code). */
export const JOB_ERROR_CODES = Object.freeze([
  'download_failed', 'pipeline_error', 'upload_failed', 'validation_failed', 'timeout', 'canceled',
]);

/** A failed request or job. `errorCode` is machine-readable, `errorMessage` is for people. */
export class RenderApiError extends Error {
  /**
   * @param {string} errorCode
   * @param {string} errorMessage
   * @param {{name?: string, httpStatus?: number|null, jobId?: string|null, job?: object|null,
   *          details?: object|null, retryAfterMs?: number|null, clientTimeout?: boolean, cause?: unknown}} [extra]
   */
  constructor(errorCode, errorMessage, extra = {}) {
    super(`${errorCode}: ${errorMessage}`, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = extra.name || 'RenderApiError';
    /** @type {string} */
    this.errorCode = errorCode;
    /** @type {string} */
    this.errorMessage = errorMessage;
    /** @type {number|null} HTTP status of the answer that failed, when there was one */
    this.httpStatus = extra.httpStatus ?? null;
    /** @type {string|null} */
    this.jobId = extra.jobId ?? null;
    /** @type {object|null} the job as last seen */
    this.job = extra.job ?? null;
    /** @type {object|null} validation_failed: {field: reason} */
    this.details = extra.details ?? null;
    /** @type {number|null} queue_full: what the appliance asked to wait */
    this.retryAfterMs = extra.retryAfterMs ?? null;
    /** @type {boolean} timeout: true when this client gave up waiting (the job itself may still finish) */
    this.clientTimeout = Boolean(extra.clientTimeout);
  }
}

// --- configuration -------------------------------------------------------------------------------------------

/** @type {{baseUrl?: string, apiKey?: string, fetch?: typeof fetch}} */
const settings = {};

/**
 * Set the defaults for every call (each call may still pass its own baseUrl / apiKey).
 * @param {{baseUrl?: string, apiKey?: string, fetch?: typeof fetch}} config
 *   fetch: a fetch implementation (tests, or a wrapper adding tracing); default globalThis.fetch
 */
export function configureRenderApi({ baseUrl, apiKey, fetch: fetchImpl } = {}) {
  if (baseUrl !== undefined) settings.baseUrl = baseUrl;
  if (apiKey !== undefined) settings.apiKey = apiKey;
  if (fetchImpl !== undefined) settings.fetch = fetchImpl;
}

/** VITE_RENDER_API_URL: replaced at build time by Vite; from the environment under Node; else ''. */
function envBaseUrl() {
  // Vite substitutes import.meta.env; plain Node (tests, scripts) has no import.meta.env.
  if (typeof import.meta.env !== 'undefined' && import.meta.env.VITE_RENDER_API_URL) {
    return String(import.meta.env.VITE_RENDER_API_URL);
  }
  const proc = /** @type {any} */ (globalThis).process;
  return (proc && proc.env && proc.env.VITE_RENDER_API_URL) || '';
}

/**
 * The base URL in use: per call, then configureRenderApi, then VITE_RENDER_API_URL.
 * @param {string} [override]
 * @returns {string}
 */
export function renderApiBaseUrl(override) {
  const base = override || settings.baseUrl || envBaseUrl();
  if (!base) {
    throw new RenderApiError('config_error', 'no render appliance URL: set VITE_RENDER_API_URL or call '
      + 'configureRenderApi({ baseUrl })');
  }
  return String(base).replace(/\/+$/, '');
}

// --- small helpers -------------------------------------------------------------------------------------------

const now = () => Date.now();

/** @param {AbortSignal} [signal] */
function abortError(signal) {
  const reason = signal && signal.reason;
  const why = reason instanceof Error && reason.message ? reason.message : 'the request was aborted';
  return new RenderApiError('aborted', why, { name: 'AbortError', cause: reason });
}

/**
 * Resolve after ms, or reject with an AbortError as soon as `signal` fires.
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(abortError(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      if (signal) signal.removeEventListener('abort', onAbort);
      resolve();
    }, Math.max(0, ms));
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** A UUID v4; crypto.randomUUID exists only in secure contexts (https, localhost), getRandomValues everywhere. */
export function newIdempotencyKey() {
  const c = /** @type {any} */ (globalThis).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(b);
  else for (let i = 0; i < 16; i += 1) b[i] = Math.floor(Math.random() * 256);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Retry-After (seconds or an HTTP date) or the body's retry_after, in ms; null when absent.
 * @param {Headers} headers
 * @param {any} data
 * @returns {number|null}
 */
function retryAfterMs(headers, data) {
  const header = headers && headers.get('retry-after');
  if (header) {
    const seconds = Number(header);
    if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
    const date = Date.parse(header);
    if (!Number.isNaN(date)) return Math.max(0, date - now());
  }
  if (data && Number.isFinite(Number(data.retry_after))) return Math.max(0, Number(data.retry_after) * 1000);
  return null;
}

/**
 * One HTTP request. Resolves {status, headers, data} for any HTTP answer; rejects with network_error
 * (no answer: unreachable, refused by CORS, or requestTimeoutMs passed) or aborted.
 * @param {string} method
 * @param {string} url
 * @param {{body?: string, apiKey?: string, signal?: AbortSignal, timeoutMs: number, idempotencyKey?: string}} opts
 * @returns {Promise<{status: number, headers: Headers, data: any}>}
 */
async function request(method, url, { body, apiKey, signal, timeoutMs, idempotencyKey }) {
  if (signal && signal.aborted) throw abortError(signal);
  const fetchImpl = settings.fetch || globalThis.fetch;
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  const controller = new AbortController();
  let timedOut = false;
  const onAbort = () => controller.abort(signal && signal.reason);
  if (signal) signal.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  try {
    const res = await fetchImpl(url, { method, headers, body, signal: controller.signal, credentials: 'omit' });
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    return { status: res.status, headers: res.headers, data };
  } catch (err) {
    if (signal && signal.aborted) throw abortError(signal);
    const why = timedOut ? `no answer within ${timeoutMs} ms` : String((err instanceof Error && err.message) || err);
    throw new RenderApiError('network_error', `could not reach the render appliance at ${url} (${why}); `
      + 'in a browser this is also how a CORS refusal looks: is this page\'s origin in the appliance\'s '
      + 'cors_origins?', { cause: err });
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener('abort', onAbort);
  }
}

/**
 * The RenderApiError for an HTTP answer this client does not retry.
 * @param {{status: number, headers: Headers, data: any}} res
 * @param {string|null} [jobId]
 */
function httpError(res, jobId = null) {
  const data = res.data || {};
  const message = data.message || data.error || `HTTP ${res.status}`;
  const extra = { httpStatus: res.status, jobId };
  if (res.status === 400) {
    const details = data.details || null;
    const fields = details ? Object.entries(details).map(([k, v]) => `${k}: ${v}`).join('; ') : message;
    return new RenderApiError('validation_failed', `the appliance refused the request (${fields})`,
      { ...extra, details });
  }
  if (res.status === 401) return new RenderApiError('unauthorized', message, extra);
  if (res.status === 404) return new RenderApiError('job_not_found', `no job ${jobId} on the appliance`, extra);
  if (res.status === 409 && data.error === 'idempotency_conflict') {
    return new RenderApiError('idempotency_conflict', message, { ...extra, jobId: data.job_id || jobId });
  }
  if (res.status === 503 && data.error === 'queue_full') {
    return new RenderApiError('queue_full', message, { ...extra, retryAfterMs: retryAfterMs(res.headers, data) });
  }
  return new RenderApiError(typeof data.error === 'string' ? data.error : 'http_error', message, extra);
}

/** {imageUrl, ...} -> the POST body (snake_case, absent fields left out). */
function jobBody({ imageUrl, textureUrl, projectId, userId, maskUrl, options, surfaces, webhookUrl,
  webhookEvents } = /** @type {any} */ ({})) {
  /** @type {Record<string, unknown>} */
  const body = { image_url: imageUrl, texture_url: textureUrl };
  if (projectId != null) body.project_id = projectId;
  if (userId != null) body.user_id = userId;
  if (maskUrl != null) body.mask_url = maskUrl;
  if (options != null) body.options = options;
  if (surfaces != null) body.surfaces = surfaces.map(surfaceBody);
  if (webhookUrl != null) body.webhook_url = webhookUrl;
  if (webhookEvents != null) body.webhook_events = webhookEvents;
  return body;
}

/** {surface, textureUrl, swatchWidthM?, maskUrl?} -> the API's entry (snake_case keys are accepted as given). */
function surfaceBody(entry) {
  const { surface, textureUrl = entry.texture_url, swatchWidthM = entry.swatch_width_m,
    maskUrl = entry.mask_url } = entry || {};
  /** @type {Record<string, unknown>} */
  const out = { surface, texture_url: textureUrl };
  if (swatchWidthM != null) out.swatch_width_m = swatchWidthM;
  if (maskUrl != null) out.mask_url = maskUrl;
  return out;
}

// --- the API -------------------------------------------------------------------------------------------------

/**
 * Start a render job: POST /render/jobs.
 *
 * Every attempt carries the same Idempotency-Key, so a retry never starts a second job. A `503 queue_full` is
 * retried after its Retry-After (until `maxQueueWaitMs`); a network error or another 5xx is retried with
 * back-off (`maxNetworkRetries`). 400/401/409 fail at once.
 *
 * @param {RenderJobInput} input
 * @param {SubmitOptions} [opts]
 * @returns {Promise<SubmitResult>}
 */
export async function submitRenderJob(input, opts = {}) {
  const {
    baseUrl, apiKey = settings.apiKey, signal, idempotencyKey = newIdempotencyKey(), requestTimeoutMs = 30000,
    maxAttempts = 8, maxNetworkRetries = 2, maxQueueWaitMs = 120000, onRetry,
  } = opts;
  const url = `${renderApiBaseUrl(baseUrl)}/render/jobs`;
  const body = JSON.stringify(jobBody(input));
  const started = now();
  let networkRetries = 0;
  let backoffMs = 500;
  for (let attempt = 1; ; attempt += 1) {
    /** @type {RenderApiError} */
    let error = /** @type {any} */ (null);
    /** @type {'queue_full'|'network_error'|'http_error'} */
    let reason;
    let delayMs;
    let res = null;
    try {
      res = await request('POST', url, { body, apiKey, signal, timeoutMs: requestTimeoutMs, idempotencyKey });
    } catch (err) {
      if (!(err instanceof RenderApiError) || err.errorCode !== 'network_error') throw err;
      error = err;
    }
    if (res && (res.status === 200 || res.status === 201)) {
      const data = res.data || {};
      if (!data.job_id) throw new RenderApiError('http_error', 'the appliance answered without a job_id', {
        httpStatus: res.status });
      return {
        jobId: data.job_id,
        pollUrl: data.poll_url || `${renderApiBaseUrl(baseUrl)}/render/jobs/${data.job_id}`,
        idempotencyKey,
        replayed: res.headers.get('idempotent-replayed') === 'true',
      };
    }
    if (res && res.status === 503 && res.data && res.data.error === 'queue_full') {
      error = httpError(res);
      reason = 'queue_full';
      delayMs = error.retryAfterMs ?? 5000;
      if (attempt >= maxAttempts || now() - started + delayMs > maxQueueWaitMs) {
        error.errorMessage = `${error.errorMessage} (still full after ${attempt} attempts)`;
        throw error;
      }
    } else if (!res || res.status >= 500) {
      if (res) error = httpError(res);
      reason = res ? 'http_error' : 'network_error';
      delayMs = (res && retryAfterMs(res.headers, res.data)) ?? backoffMs;
      backoffMs *= 2;
      networkRetries += 1;
      if (networkRetries > maxNetworkRetries || attempt >= maxAttempts) throw error;
    } else {
      throw httpError(res);
    }
    if (onRetry) onRetry({ attempt, reason, delayMs, httpStatus: res ? res.status : null, error });
    await sleep(delayMs, signal);
  }
}

/**
 * One look at a job: GET /render/jobs/{jobId}, the job as the appliance shows it.
 * @param {string} jobId
 * @param {RequestOptions} [opts]
 * @returns {Promise<object>}
 */
export async function getRenderJob(jobId, opts = {}) {
  const { baseUrl, apiKey = settings.apiKey, signal, requestTimeoutMs = 15000 } = opts;
  const res = await request('GET', `${renderApiBaseUrl(baseUrl)}/render/jobs/${encodeURIComponent(jobId)}`,
    { apiKey, signal, timeoutMs: requestTimeoutMs });
  if (res.status !== 200) throw httpError(res, jobId);
  return res.data;
}

/**
 * Wait for a job to finish: polls GET /render/jobs/{jobId} until it is completed (resolves) or failed (rejects
 * with the job's errorCode/errorMessage). Network errors and 5xx answers are retried with back-off until
 * `timeoutMs`, after which it rejects with errorCode "timeout" (clientTimeout: true; the job is not canceled,
 * see cancelRenderJob). Aborting `signal` rejects at once with errorCode "aborted".
 *
 * @param {string} jobId
 * @param {PollOptions} [opts]
 * @returns {Promise<PollResult>}
 */
export async function pollRenderJob(jobId, opts = {}) {
  const {
    baseUrl, apiKey = settings.apiKey, signal, onProgress, intervalMs = 1000, maxIntervalMs = 5000,
    backoffFactor = 1.5, timeoutMs = 600000, requestTimeoutMs = 15000,
  } = opts;
  const url = `${renderApiBaseUrl(baseUrl)}/render/jobs/${encodeURIComponent(jobId)}`;
  const deadline = now() + timeoutMs;
  let delayMs = intervalMs;
  /** @type {any} */
  let lastJob = null;
  let lastSeen = '';
  /** @type {RenderApiError|null} */
  let lastError = null;
  const giveUp = () => {
    const where = lastJob ? `last seen: ${lastJob.stage || lastJob.status}` : (lastError ? lastError.errorMessage
      : 'no answer yet');
    return new RenderApiError('timeout', `gave up waiting for job ${jobId} after ${timeoutMs} ms (${where}); `
      + 'the job may still be running', { jobId, job: lastJob, clientTimeout: true, cause: lastError || undefined });
  };
  for (;;) {
    const remaining = deadline - now();
    if (remaining <= 0) throw giveUp();
    let res = null;
    try {
      res = await request('GET', url, { apiKey, signal, timeoutMs: Math.min(requestTimeoutMs, remaining) });
    } catch (err) {
      if (!(err instanceof RenderApiError) || err.errorCode !== 'network_error') throw err;
      lastError = err;
    }
    if (res && res.status === 200 && res.data) {
      const job = res.data;
      lastJob = job;
      lastError = null;
      if (job.status === 'completed') {
        if (onProgress) onProgress({ stage: 'completed', progress: 1, queuePosition: null, job });
        return { status: 'completed', resultUrl: job.result_url, jobId, job };
      }
      if (job.status === 'failed') {
        throw new RenderApiError(job.error_code || 'pipeline_error', job.error_message || 'the render failed',
          { jobId, job, httpStatus: 200 });
      }
      const seen = `${job.stage}|${job.progress}|${job.queue_position}`;
      if (onProgress) {
        onProgress({ stage: job.stage || 'queued', progress: Number(job.progress) || 0,
          queuePosition: job.queue_position ?? null, job });
      }
      delayMs = seen !== lastSeen ? intervalMs : Math.min(maxIntervalMs, delayMs * backoffFactor);
      lastSeen = seen;
    } else if (!res || res.status >= 500 || res.status === 429) {
      if (res) lastError = httpError(res, jobId);
      const asked = res ? retryAfterMs(res.headers, res.data) : null;
      delayMs = asked ?? Math.min(maxIntervalMs, Math.max(intervalMs, delayMs * 2));
    } else {
      throw httpError(res, jobId);
    }
    const wait = Math.min(delayMs, deadline - now());
    if (wait <= 0) throw giveUp();
    await sleep(wait, signal);
  }
}

/**
 * Wait for a job to finish like pollRenderJob (same options, result and errors), but following the job's
 * server-sent events (GET /render/jobs/{jobId}/events): each change of stage, progress or queue position arrives
 * as it happens instead of at the next poll. Where the appliance has no such stream (an older one, a proxy that
 * buffers or refuses it) or the stream breaks, it falls back to polling for the time left. The stream is read with
 * fetch, so the API key goes in the Authorization header (a browser EventSource cannot send one).
 *
 * @param {string} jobId
 * @param {PollOptions} [opts]
 * @returns {Promise<PollResult>}
 */
export async function watchRenderJob(jobId, opts = {}) {
  const { baseUrl, apiKey = settings.apiKey, signal, onProgress, timeoutMs = 600000, requestTimeoutMs = 15000 } = opts;
  const started = now();
  const url = `${renderApiBaseUrl(baseUrl)}/render/jobs/${encodeURIComponent(jobId)}/events`;
  const done = await followEvents(url, jobId, { apiKey, signal, onProgress, requestTimeoutMs,
    deadline: started + timeoutMs });
  if (done) return done;
  return pollRenderJob(jobId, { ...opts, timeoutMs: Math.max(0, timeoutMs - (now() - started)) });
}

/**
 * Read one event stream. Resolves the PollResult on `completed`, rejects on `failed` (or abort), resolves null
 * when the stream is unavailable or ends without a final event (the caller polls instead).
 * @returns {Promise<PollResult|null>}
 */
async function followEvents(url, jobId, { apiKey, signal, onProgress, requestTimeoutMs, deadline }) {
  if (signal && signal.aborted) throw abortError(signal);
  const fetchImpl = settings.fetch || globalThis.fetch;
  /** @type {Record<string, string>} */
  const headers = { Accept: 'text/event-stream' };
  if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal && signal.reason);
  if (signal) signal.addEventListener('abort', onAbort, { once: true });
  let answered = false;
  const headerTimer = setTimeout(() => { if (!answered) controller.abort(); }, requestTimeoutMs);
  const deadlineTimer = setTimeout(() => controller.abort(), Math.max(0, deadline - now()));
  try {
    const res = await fetchImpl(url, { method: 'GET', headers, signal: controller.signal, credentials: 'omit' });
    answered = true;
    const type = (res.headers.get('content-type') || '').toLowerCase();
    if (res.status !== 200 || !type.startsWith('text/event-stream') || !res.body) {
      if (res.body) await res.body.cancel().catch(() => {});
      return null;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let event = 'message';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return null;
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop() || '';
      for (const line of lines) {
        if (line === '') {
          const text = data.join('\n');
          const name = event;
          event = 'message';
          data = [];
          if (!text) continue;
          const job = JSON.parse(text);
          if (name === 'progress') {
            if (onProgress) {
              onProgress({ stage: job.stage || 'queued', progress: Number(job.progress) || 0,
                queuePosition: job.queue_position ?? null, job });
            }
          } else if (name === 'completed') {
            reader.cancel().catch(() => {});
            if (onProgress) onProgress({ stage: 'completed', progress: 1, queuePosition: null, job });
            return { status: 'completed', resultUrl: job.result_url, jobId, job };
          } else if (name === 'failed') {
            reader.cancel().catch(() => {});
            throw new RenderApiError(job.error_code || 'pipeline_error', job.error_message || 'the render failed',
              { jobId, job, httpStatus: 200 });
          } else {
            return null; // "error" (the job is gone): polling reports it
          }
        } else if (line.startsWith('event:')) {
          event = line.slice(6).trim();
        } else if (line.startsWith('data:')) {
          data.push(line.slice(5).replace(/^ /, ''));
        }
      }
    }
  } catch (err) {
    if (signal && signal.aborted) throw abortError(signal);
    if (err instanceof RenderApiError) throw err;
    return null; // network error, timeout, a broken stream: poll
  } finally {
    clearTimeout(headerTimer);
    clearTimeout(deadlineTimer);
    if (signal) signal.removeEventListener('abort', onAbort);
  }
}

/**
 * Ask the appliance to cancel a job: POST /render/jobs/{jobId}/cancel. A queued job fails "canceled" at once; a
 * running one stops at its next stage boundary (poll to see it fail "canceled"). A job that already ended is
 * returned as it is.
 * @param {string} jobId
 * @param {RequestOptions} [opts]
 * @returns {Promise<object>} the job
 */
export async function cancelRenderJob(jobId, opts = {}) {
  const { baseUrl, apiKey = settings.apiKey, signal, requestTimeoutMs = 15000 } = opts;
  const res = await request('POST', `${renderApiBaseUrl(baseUrl)}/render/jobs/${encodeURIComponent(jobId)}/cancel`,
    { apiKey, signal, timeoutMs: requestTimeoutMs });
  if (res.status === 200 || res.status === 202) return res.data;
  if (res.status === 409 && res.data && res.data.job) return res.data.job;
  throw httpError(res, jobId);
}
