// The demo: one render through renderApi.js, straight from the browser to the appliance.
import {
  cancelRenderJob, configureRenderApi, renderApiBaseUrl, stageLabel, submitRenderJob, watchRenderJob,
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
let canceling = false; // the user pressed Cancel: the abort that follows is not an error

// state: idle | submitting | processing | completed | failed | canceled; text: what a person reads
function setState(state, text, progress) {
  $('status').dataset.state = state;
  $('stage').textContent = text;
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
  canceling = false;
  $('render').disabled = true;
  $('cancel').disabled = false;
  $('error').textContent = '';
  delete $('error').dataset.code;
  $('events').replaceChildren();
  $('result').hidden = true;
  delete $('error').dataset.kind;
  setState('submitting', 'Sending the job', 0);
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
        $('stage').dataset.stage = stage;
        setState('processing', queuePosition ? `${stageLabel('queued')} (${queuePosition} ahead)` : stageLabel(stage),
          progress);
        logEvent(`${stage} ${Math.round(progress * 100)}%`); // the raw stage: a log for developers
      },
    });
    await new Promise((resolve, reject) => {
      $('result').onload = resolve;
      $('result').onerror = () => reject(new Error(`could not load ${resultUrl}`));
      $('result').src = resultUrl;
      $('result').hidden = false;
    });
    setState('completed', stageLabel('completed'), 1);
  } catch (err) {
    const code = err.errorCode || 'error';
    if (canceling || code === 'canceled') {
      // Not an error: say what happened and what the appliance does with the job.
      $('error').dataset.code = 'canceled';
      $('error').dataset.kind = 'notice';
      $('error').textContent = canceling
        ? 'Render canceled. You stopped it: the appliance drops the job (a waiting one at once, a running one '
          + 'after its current step) and keeps no result.'
        : 'Render canceled on the appliance (for example by an operator). No result was made.';
      setState('canceled', 'Canceled', $('progress').value);
      return;
    }
    $('error').dataset.code = code;
    $('error').textContent = `${code}: ${err.errorMessage || err.message}`;
    setState('failed', 'Failed', $('progress').value);
  } finally {
    $('render').disabled = false;
    $('cancel').disabled = true;
  }
});

$('cancel').addEventListener('click', () => {
  canceling = true;
  setState('canceling', 'Canceling…', $('progress').value);
  if (currentJob) cancelRenderJob(currentJob).catch(() => {});
  if (controller) controller.abort();
});
