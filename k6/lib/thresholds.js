// Thresholds from the environment. Any of them can abort the run when it
// fails (ABORT_ON_FAIL=true), after ABORT_DELAY of grace (default 10s):
//   THRESHOLD_P95_MS, THRESHOLD_P99_MS   http_req_duration percentiles
//   THRESHOLD_ERROR_RATE                 http_req_failed rate (0..1)
//   THRESHOLD_DROPPED                    dropped_iterations count
//   THRESHOLDS                           raw k6 thresholds as JSON, merged in
import { bool, num, str } from './env.js';

export function thresholds(extra) {
  const abortOnFail = bool('ABORT_ON_FAIL', false);
  const delayAbortEval = str('ABORT_DELAY', '10s');
  const t = Object.assign({}, extra || {});
  const add = (metric, expr) => {
    (t[metric] = t[metric] || []).push(abortOnFail ? { threshold: expr, abortOnFail, delayAbortEval } : expr);
  };
  const p95 = num('THRESHOLD_P95_MS', undefined);
  const p99 = num('THRESHOLD_P99_MS', undefined);
  const errRate = num('THRESHOLD_ERROR_RATE', undefined);
  const dropped = num('THRESHOLD_DROPPED', undefined);
  if (p95 !== undefined) add('http_req_duration', `p(95)<${p95}`);
  if (p99 !== undefined) add('http_req_duration', `p(99)<${p99}`);
  if (errRate !== undefined) add('http_req_failed', `rate<${errRate}`);
  if (dropped !== undefined) add('dropped_iterations', `count<=${dropped}`);
  const raw = str('THRESHOLDS', '');
  if (raw !== '') {
    const parsed = JSON.parse(raw);
    for (const k of Object.keys(parsed)) t[k] = (t[k] || []).concat(parsed[k]);
  }
  return t;
}

// STATUSES are the HTTP statuses whose counts the summary lists.
export const STATUSES = [0, 200, 202, 204, 400, 401, 404, 413, 415, 429, 500, 502, 503, 504];

// statusCounts adds always-true thresholds on metric{status:N}: k6 keeps
// per-tag sub-metrics in the summary only when a threshold names them.
export function statusCounts(t, metric) {
  for (const s of STATUSES) t[`${metric}{status:${s}}`] = (t[`${metric}{status:${s}}`] || []).concat(['count>=0']);
  return t;
}
