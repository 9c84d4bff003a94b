// Spawns test/start_appliance.py (a real render appliance, a photo server, optionally the Storage double) and
// talks to it over its stdin/stdout. The Python side stops everything when stdin closes, so a crashed or killed
// test run leaves no server behind.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '..', '..', '..');

function python() {
  if (process.env.RENDER_PYTHON) return process.env.RENDER_PYTHON;
  const venv = path.join(REPO_ROOT, '.venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

/**
 * @param {{queueDepth?: number, geometryDelay?: number, stagePause?: number, corsOrigins?: string[],
 *          supabase?: boolean, apiKey?: string, startTimeoutMs?: number}} opts
 */
export async function startAppliance(opts = {}) {
  const args = [path.join(HERE, 'start_appliance.py'), '--queue-depth', String(opts.queueDepth ?? 1),
    '--geometry-delay', String(opts.geometryDelay ?? 0), '--stage-pause', String(opts.stagePause ?? 0)];
  for (const origin of opts.corsOrigins || []) args.push('--cors-origin', origin);
  if (opts.supabase) args.push('--supabase');
  if (opts.apiKey) args.push('--api-key', opts.apiKey);
  const env = { ...process.env };
  env.RENDER_SHARED_DIR ||= path.resolve(REPO_ROOT, '..', 'shared');
  const child = spawn(python(), args, { cwd: REPO_ROOT, env, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  const queued = [];
  lines.on('line', (line) => {
    if (!line.trim().startsWith('{')) return; // stray prints
    const message = JSON.parse(line);
    if (waiting.length) waiting.shift()(message);
    else queued.push(message);
  });
  let exited = null;
  child.on('exit', (code) => {
    exited = code;
    while (waiting.length) waiting.shift()({ error: `start_appliance.py exited with ${code}` });
  });
  const next = (timeoutMs) => new Promise((resolve, reject) => {
    if (queued.length) {
      resolve(queued.shift());
      return;
    }
    if (exited !== null) {
      reject(new Error(`start_appliance.py exited with ${exited}`));
      return;
    }
    const timer = setTimeout(() => reject(new Error(`no answer from start_appliance.py in ${timeoutMs} ms`)),
      timeoutMs);
    waiting.push((message) => {
      clearTimeout(timer);
      resolve(message);
    });
  });

  const info = await next(opts.startTimeoutMs ?? 180000);
  if (info.error) {
    child.stdin.end();
    throw new Error(info.error);
  }
  return {
    ...info,
    /** Send a command ({cmd: ...}) and wait for its answer. */
    async command(cmd) {
      child.stdin.write(`${JSON.stringify({ cmd })}\n`);
      const answer = await next(30000);
      if (!answer.ok) throw new Error(`command ${cmd} failed: ${JSON.stringify(answer)}`);
      return answer;
    },
    /** Wait until no job is queued or running (tests start from an idle appliance). */
    async drain(timeoutMs = 60000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { active_jobs: active } = await this.command('active_jobs');
        if (active === 0) return;
        if (Date.now() > deadline) throw new Error(`appliance still has ${active} active jobs`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      if (exited !== null) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 45000);
      await gone;
      clearTimeout(timer);
    },
  };
}
