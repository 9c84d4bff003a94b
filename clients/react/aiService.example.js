/**
 * aiService.example.js: the studio's render flow, ready to drop into `src/services/aiService.js`.
 *
 *   upload the photo (and mask, and swatch files) to Supabase Storage
 *   -> save the `projects` row (status "processing")
 *   -> submit a render job to the appliance -> poll it
 *   -> write generated_image_url, append it to generated_image_urls, status "completed"
 *      or, on any failure after the row is saved, status "failed" (and the error is rethrown)
 *
 * Written against @supabase/supabase-js v2 (`supabase.storage.from(bucket).upload/getPublicUrl`,
 * `supabase.from('projects').upsert/update/select`); pass in the app's own client:
 *
 *   import { supabase } from '../lib/supabaseClient';
 *   import { generateRender } from './aiService';
 *   const { resultUrl, project } = await generateRender({
 *     supabase, userId: session.user.id, photo: file,
 *     swatches: [{ id: 'brick-1', name: 'Red brick', color: '#B04A3A', url: swatchUrl },   // the wall
 *                { id: 'white', name: 'White trim', color: '#F4F1EA', surface: 'trim' },
 *                { id: 'red-door', name: 'Red door', color: '#8B1A1A', surface: 'door' }],
 *     onProgress: ({ phase, stage, progress }) => setProgress(progress),
 *     signal: abortController.signal,
 *   });
 *
 * Assumed schema (adapt the names in `COLUMNS` below if yours differ):
 *   projects(id uuid primary key, user_id uuid, original_image_url text, mask_url text, swatch_data jsonb
 *            -- [{id, name, color, url, surface?}], status text, generated_image_url text, generated_image_urls text[])
 *
 * Several surfaces (`swatchesToSurfaces`): the wall is the swatch whose `surface` is "wall", else the first one
 * without a `surface` (so the first swatch of an app that never sets one);
 * every other swatch that names a `surface` (roof, trim -- shutters included --, door, garage_door) paints that
 * surface, with its image, else its colour (and its optional `swatch_width_m`). Swatches without a `surface`
 * after the first are kept in swatch_data but not rendered.
 * The appliance downloads the photo, mask and swatch by URL: the bucket must be public, or pass
 * `signedUrlSeconds` to hand it signed URLs instead.
 */
import {
  RenderApiError, cancelRenderJob, newIdempotencyKey, submitRenderJob, watchRenderJob,
} from './renderApi.js'; // in the app: '../api/renderApi'

export const PROJECTS_TABLE = 'projects';
export const DEFAULT_BUCKET = 'project-images';
const COLUMNS = {
  id: 'id',
  userId: 'user_id',
  original: 'original_image_url',
  mask: 'mask_url',
  swatches: 'swatch_data',
  status: 'status',
  generated: 'generated_image_url',
  generatedAll: 'generated_image_urls',
};

/**
 * @typedef {object} Swatch
 * @property {string} [id]
 * @property {string} [name]
 * @property {string} [color]   "#RRGGBB"; used as a paint colour when the swatch has no image
 * @property {string} [url]     the swatch image, already in Storage
 * @property {File|Blob} [file] a swatch image to upload first (its URL then goes into swatch_data)
 * @property {string} [surface] the part of the house it is for: wall (default for the first swatch), roof, trim,
 *                              door, garage_door
 * @property {number} [swatch_width_m] real width of the swatch image in metres (per surface)
 */

/**
 * @typedef {object} FlowProgress
 * @property {'uploading'|'saving'|'submitting'|'queued'|'rendering'|'saving_result'|'completed'} phase
 * @property {string|null} stage       the appliance's stage while rendering
 * @property {number} progress         0..1 over the whole flow
 * @property {string|null} jobId
 */

const isColour = (value) => typeof value === 'string' && /^#[0-9a-f]{6}$/i.test(value.trim());

/** A swatch's material for the appliance: its image URL, else its paint colour, else null. */
const materialOf = (swatch) => (swatch && swatch.url) || (swatch && isColour(swatch.color) ? swatch.color.trim() : null);

/**
 * The project's swatch_data -> the job's wall material and `surfaces` (see the header). A surface swatch with
 * neither image nor colour is left out.
 * @param {Swatch[]} swatchData
 * @returns {{textureUrl: string|null, surfaces: import('./renderApi.js').SurfaceInput[]}}
 */
export function swatchesToSurfaces(swatchData) {
  const list = swatchData || [];
  const wall = list.find((s) => s && s.surface === 'wall') || list.find((s) => s && !s.surface) || null;
  const surfaces = [];
  for (const swatch of list) {
    if (!swatch || swatch === wall || !swatch.surface || swatch.surface === 'wall') continue;
    const textureUrl = materialOf(swatch);
    if (!textureUrl) continue;
    surfaces.push({ surface: swatch.surface, textureUrl,
      ...(swatch.swatch_width_m != null ? { swatchWidthM: swatch.swatch_width_m } : {}) });
  }
  return { textureUrl: materialOf(wall), surfaces };
}

function extensionOf(file, fallback) {
  const fromName = file && typeof file.name === 'string' && /\.([a-z0-9]{2,5})$/i.exec(file.name);
  if (fromName) return fromName[1].toLowerCase();
  const fromType = file && typeof file.type === 'string' && /^image\/([a-z0-9.+-]+)$/i.exec(file.type);
  if (fromType) return fromType[1].toLowerCase().replace('jpeg', 'jpg').replace('svg+xml', 'svg');
  return fallback;
}

function contentTypeOf(file, ext) {
  if (file && file.type) return file.type;
  return { jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp' }[ext] || 'image/jpeg';
}

function supabaseError(what, error) {
  return new RenderApiError('supabase_error', `${what}: ${(error && error.message) || error}`, { cause: error });
}

/**
 * Upload a File/Blob to `bucket` at `path` and return a URL the appliance can download (public, or signed).
 * The bytes go up with an explicit contentType: a File with an empty `type` (some drag-and-drop sources) would
 * otherwise be stored as application/octet-stream and refused by an image-only bucket.
 * @param {any} supabase
 * @param {string} bucket
 * @param {string} path
 * @param {File|Blob} file
 * @param {{signedUrlSeconds?: number}} [opts]
 */
async function uploadImage(supabase, bucket, path, file, opts = {}) {
  const { signedUrlSeconds } = opts;
  const ext = extensionOf(file, 'jpg');
  const body = typeof file.arrayBuffer === 'function' ? await file.arrayBuffer() : file;
  const { error } = await supabase.storage.from(bucket).upload(path, body, {
    contentType: contentTypeOf(file, ext), cacheControl: '3600', upsert: true,
  });
  if (error) {
    throw new RenderApiError('upload_failed', `could not upload ${path} to Storage bucket "${bucket}": `
      + `${error.message || error}`, { cause: error });
  }
  if (signedUrlSeconds) {
    const { data, error: signError } = await supabase.storage.from(bucket).createSignedUrl(path, signedUrlSeconds);
    if (signError) throw supabaseError(`could not sign ${path}`, signError);
    return data.signedUrl;
  }
  return supabase.storage.from(bucket).getPublicUrl(path).data.publicUrl;
}

/** `value` as a URL: a string is kept, a File/Blob is uploaded; null/undefined stays null. */
async function asUrl(supabase, bucket, value, pathNoExt, opts) {
  if (value == null) return null;
  if (typeof value === 'string') return value;
  return uploadImage(supabase, bucket, `${pathNoExt}.${extensionOf(value, 'jpg')}`, value, opts);
}

/**
 * @typedef {object} GenerateRenderArgs
 * @property {any} supabase                 the app's SupabaseClient (supabase-js createClient)
 * @property {string} userId                the signed-in user's id (a UUID)
 * @property {string} [projectId]           re-render an existing project; a new UUID otherwise
 * @property {File|Blob|string} photo       the house photo, or the URL of one already in Storage
 * @property {File|Blob|string|null} [mask] optional paint mask (white = paint), same size as the photo
 * @property {Swatch[]} [swatches]          saved as swatch_data [{id, name, color, url, surface?}]; the wall
 *                                          is rendered with the first one (its url, else its colour, else the
 *                                          photo itself), other surfaces by their `surface` field
 * @property {Record<string, unknown>} [projectFields]  more columns for the row (e.g. {name})
 * @property {import('./renderApi.js').RenderOptions} [options]  appliance options (real_world_scale, ...)
 * @property {(p: FlowProgress) => void} [onProgress]
 * @property {AbortSignal} [signal]         abort: the job is canceled on the appliance, the project marked failed
 * @property {string} [bucket]              default "project-images"
 * @property {number} [signedUrlSeconds]    hand the appliance signed URLs (private bucket)
 * @property {'auto'|'always'|'never'} [persistResult]  copy the render into Storage; "auto" (default) copies it
 *   unless it is already there (an appliance storing results on its own disk deletes them after retention_hours)
 * @property {import('./renderApi.js').PollOptions} [poll]      intervalMs, timeoutMs, ...
 * @property {import('./renderApi.js').SubmitOptions} [submit]  apiKey, maxQueueWaitMs, onRetry, ...
 */

/**
 * The whole flow: upload + save the project, render on the appliance, save the result.
 * @param {GenerateRenderArgs} args
 * @returns {Promise<{project: object, resultUrl: string, jobId: string}>}
 */
export async function generateRender(args) {
  const {
    supabase, userId, photo, mask = null, swatches = [], projectFields = {}, options, onProgress, signal,
    bucket = DEFAULT_BUCKET, signedUrlSeconds, persistResult = 'auto', poll = {}, submit = {},
  } = args;
  const projectId = args.projectId || newIdempotencyKey(); // a UUID v4
  const report = (phase, progress, extra = {}) => {
    if (onProgress) onProgress({ phase, stage: null, progress, jobId: null, ...extra });
  };
  const stamp = Date.now();
  const folder = `${userId}/${projectId}`;
  const urlOpts = { signedUrlSeconds };

  // 1. Upload the inputs.
  report('uploading', 0);
  const originalUrl = await asUrl(supabase, bucket, photo, `${folder}/original-${stamp}`, urlOpts);
  const maskUrl = await asUrl(supabase, bucket, mask, `${folder}/mask-${stamp}`, urlOpts);
  const swatchData = [];
  for (const [i, swatch] of swatches.entries()) {
    const url = swatch.file
      ? await asUrl(supabase, bucket, swatch.file, `${folder}/swatch-${i}-${stamp}`, urlOpts)
      : (swatch.url ?? null);
    swatchData.push({ id: swatch.id ?? String(i), name: swatch.name ?? null, color: swatch.color ?? null, url,
      ...(swatch.surface ? { surface: swatch.surface } : {}),
      ...(swatch.swatch_width_m != null ? { swatch_width_m: swatch.swatch_width_m } : {}) });
  }
  if (signal && signal.aborted) throw new RenderApiError('aborted', 'aborted before the project was saved',
    { name: 'AbortError' });

  // 2. Save the project (a re-render keeps its generated_image_urls: upsert merges).
  report('saving', 0.05);
  const { error: saveError } = await supabase.from(PROJECTS_TABLE).upsert({
    ...projectFields,
    [COLUMNS.id]: projectId,
    [COLUMNS.userId]: userId,
    [COLUMNS.original]: originalUrl,
    [COLUMNS.mask]: maskUrl,
    [COLUMNS.swatches]: swatchData,
    [COLUMNS.status]: 'processing',
  }).select().single();
  if (saveError) throw supabaseError('could not save the project', saveError);

  let jobId = null;
  try {
    // 3. Submit: the wall swatch's image, else its paint colour, else the photo itself; the other surfaces'.
    const { textureUrl: wallMaterial, surfaces } = swatchesToSurfaces(swatchData);
    const textureUrl = wallMaterial || originalUrl;
    report('submitting', 0.08);
    ({ jobId } = await submitRenderJob(
      { imageUrl: originalUrl, textureUrl, projectId, userId, maskUrl, options,
        ...(surfaces.length ? { surfaces } : {}) },
      { ...submit, signal, idempotencyKey: submit.idempotencyKey || `${projectId}:${stamp}` },
    ));

    // 4. Follow the job until the render is done (its event stream; polling where there is none).
    const { resultUrl: rendered } = await watchRenderJob(jobId, {
      ...poll,
      signal,
      onProgress: (p) => {
        report(p.stage === 'queued' ? 'queued' : 'rendering', 0.1 + 0.8 * p.progress, { stage: p.stage, jobId });
        if (poll.onProgress) poll.onProgress(p);
      },
    });

    // 5. Keep the render where the project lives.
    report('saving_result', 0.92, { jobId });
    const resultUrl = await persist(supabase, bucket, rendered, `${folder}/render-${jobId}.png`, persistResult,
      urlOpts, signal);
    const { data: current, error: readError } = await supabase.from(PROJECTS_TABLE)
      .select(COLUMNS.generatedAll).eq(COLUMNS.id, projectId).single();
    if (readError) throw supabaseError('could not read the project', readError);
    const { data: project, error: updateError } = await supabase.from(PROJECTS_TABLE).update({
      [COLUMNS.generated]: resultUrl,
      [COLUMNS.generatedAll]: [...((current && current[COLUMNS.generatedAll]) || []), resultUrl],
      [COLUMNS.status]: 'completed',
    }).eq(COLUMNS.id, projectId).select().single();
    if (updateError) throw supabaseError('could not save the render on the project', updateError);
    report('completed', 1, { jobId });
    return { project, resultUrl, jobId };
  } catch (err) {
    // 6. Failed: stop the job if we walked away from it, and say so on the project.
    const walkedAway = err instanceof RenderApiError && (err.errorCode === 'aborted' || err.clientTimeout);
    if (jobId && walkedAway) {
      await cancelRenderJob(jobId, { apiKey: submit.apiKey, baseUrl: submit.baseUrl }).catch(() => {});
    }
    const { error: markError } = await supabase.from(PROJECTS_TABLE)
      .update({ [COLUMNS.status]: 'failed' }).eq(COLUMNS.id, projectId);
    if (markError && typeof console !== 'undefined') {
      console.error('aiService: could not mark the project failed', markError);
    }
    if (err instanceof RenderApiError && !err.jobId && jobId) err.jobId = jobId;
    throw err;
  }
}

/** The render's lasting URL: copied into Storage unless it is there already (persist "auto"). */
async function persist(supabase, bucket, resultUrl, path, mode, urlOpts, signal) {
  if (mode === 'never') return resultUrl;
  if (mode === 'auto') {
    const storageOrigin = new URL(supabase.storage.from(bucket).getPublicUrl('x').data.publicUrl).origin;
    if (new URL(resultUrl).origin === storageOrigin) return resultUrl;
  }
  const res = await fetch(resultUrl, { signal });
  if (!res.ok) throw new RenderApiError('upload_failed', `could not fetch the render ${resultUrl}: HTTP ${res.status}`);
  const blob = await res.blob();
  return uploadImage(supabase, bucket, path, new Blob([blob], { type: 'image/png' }), urlOpts);
}
