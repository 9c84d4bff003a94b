// The demo: one render through renderApi.js, straight from the browser to the appliance.
import {
  cancelRenderJob, configureRenderApi, renderApiBaseUrl, submitRenderJob, watchRenderJob,
} from '../renderApi.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(window.location.search);
if (params.get('api')) configureRenderApi({ baseUrl: params.get('api') });
$('image').value = params.get('image') || '';
$('texture').value = params.get('texture') || '#B04A3A';
try {
  $('api').textContent = renderApiBaseUrl();
} catch (err) {
  $('api').textContent = '(not set)';
  $('error').textContent = err.errorMessage;
}

let controller = null;
let currentJob = null;

function setState(state, stage, progress) {
  $('status').dataset.state = state;
  $('stage').textContent = stage;
  $('progress').value = progress;
  $('percent').textContent = `${Math.round(progress * 100)}%`;
}

function logEvent(text) {
  const li = document.createElement('li');
  li.textContent = text;
  $('events').append(li);
}

$('form').addEventListener('submit', async (event) => {
  event.preventDefault();
  controller = new AbortController();
  currentJob = null;
  $('render').disabled = true;
  $('cancel').disabled = false;
  $('error').textContent = '';
  delete $('error').dataset.code;
  $('events').replaceChildren();
  $('result').hidden = true;
  setState('submitting', 'submitting', 0);
  try {
    const { jobId } = await submitRenderJob(
      { imageUrl: $('image').value.trim(), textureUrl: $('texture').value.trim() },
      { signal: controller.signal, onRetry: ({ reason, delayMs }) => logEvent(`retry: ${reason}, in ${delayMs} ms`) },
    );
    currentJob = jobId;
    logEvent(`job ${jobId}`);
    const { resultUrl } = await watchRenderJob(jobId, {
      signal: controller.signal,
      intervalMs: Number(params.get('interval')) || 250,
      maxIntervalMs: 2000,
      onProgress: ({ stage, progress, queuePosition }) => {
        setState('processing', queuePosition ? `queued (${queuePosition} ahead)` : stage, progress);
        logEvent(`${stage} ${Math.round(progress * 100)}%`);
      },
    });
    await new Promise((resolve, reject) => {
      $('result').onload = resolve;
      $('result').onerror = () => reject(new Error(`could not load ${resultUrl}`));
      $('result').src = resultUrl;
      $('result').hidden = false;
    });
    setState('completed', 'completed', 1);
  } catch (err) {
    const code = err.errorCode || 'error';
    $('error').dataset.code = code;
    $('error').textContent = `${code}: ${err.errorMessage || err.message}`;
    setState('failed', 'failed', $('progress').value);
  } finally {
    $('render').disabled = false;
    $('cancel').disabled = true;
  }
});

$('cancel').addEventListener('click', () => {
  if (currentJob) cancelRenderJob(currentJob).catch(() => {});
  if (controller) controller.abort();
});
