// handleSummary for every DSP Lab script: a JSON summary written to
// SUMMARY_PATH (default /tmp/k6-summary.json; the platform copies it out of
// the job container), and a readable summary on stdout.
import { str } from './env.js';

export const SUMMARY_PATH_DEFAULT = '/tmp/k6-summary.json';

function values(data, name) {
  return (data.metrics[name] && data.metrics[name].values) || {};
}

// overview picks the numbers a person (and the platform) looks at first.
export function overview(data, counters) {
  const d = values(data, 'http_req_duration');
  const out = {
    requests: values(data, 'http_reqs').count || 0,
    requests_per_second: values(data, 'http_reqs').rate || 0,
    failed_rate: values(data, 'http_req_failed').rate || 0,
    iterations: values(data, 'iterations').count || 0,
    dropped_iterations: values(data, 'dropped_iterations').count || 0,
    vus_max: values(data, 'vus_max').max || values(data, 'vus_max').value || 0,
    latency_ms: { avg: d.avg, p50: d.med, p90: d['p(90)'], p95: d['p(95)'], p99: d['p(99)'], max: d.max },
    by_status: {},
  };
  for (const name of counters || []) out[name] = values(data, name).count || 0;
  for (const k of Object.keys(data.metrics)) {
    const m = /^http_reqs\{status:(\d+)\}$/.exec(k) || /^responses\{status:(\d+)\}$/.exec(k);
    if (m && data.metrics[k].values.count > 0) out.by_status[m[1]] = data.metrics[k].values.count;
  }
  return out;
}

function thresholdResults(data) {
  const out = {};
  for (const [name, m] of Object.entries(data.metrics)) {
    if (!m.thresholds) continue;
    for (const [expr, r] of Object.entries(m.thresholds)) {
      // count>=0 on {status:N} only keeps the sub-metric in the summary.
      if (!(expr === 'count>=0' && name.includes('{status:'))) out[`${name}: ${expr}`] = r.ok;
    }
  }
  return out;
}

function fmt(n, digits) {
  return n === undefined || n === null ? '-' : Number(n).toFixed(digits === undefined ? 1 : digits);
}

function text(script, plan, o, th) {
  const lines = [];
  lines.push(`DSP Lab k6 — ${script}, profile ${plan.profile} (rate ${plan.rate}/s, ${plan.duration}s)`);
  lines.push(`  requests     ${o.requests} (${fmt(o.requests_per_second)}/s), failed ${fmt(o.failed_rate * 100, 2)}%`);
  lines.push(`  latency ms   p50 ${fmt(o.latency_ms.p50)}  p90 ${fmt(o.latency_ms.p90)}  p95 ${fmt(o.latency_ms.p95)}  p99 ${fmt(o.latency_ms.p99)}  max ${fmt(o.latency_ms.max)}`);
  lines.push(`  iterations   ${o.iterations}, dropped ${o.dropped_iterations} (VU cap ${o.vus_max})`);
  const statuses = Object.entries(o.by_status).map(([s, c]) => `${s}: ${c}`).join(', ');
  if (statuses) lines.push(`  by status    ${statuses}`);
  for (const [k, v] of Object.entries(o)) {
    if (typeof v === 'number' && !['requests', 'requests_per_second', 'failed_rate', 'iterations', 'dropped_iterations', 'vus_max'].includes(k)) {
      lines.push(`  ${k.padEnd(12)} ${v}`);
    }
  }
  const failed = Object.entries(th).filter(([, ok]) => !ok).map(([k]) => k);
  lines.push(`  thresholds   ${Object.keys(th).length === 0 ? 'none' : failed.length === 0 ? 'all passed' : 'FAILED: ' + failed.join('; ')}`);
  return lines.join('\n') + '\n';
}

// summarize returns a handleSummary result for script, given its plan and
// the names of its custom counters.
export function summarize(data, script, plan, counters) {
  const o = overview(data, counters);
  const th = thresholdResults(data);
  const doc = {
    version: 1,
    script,
    job_id: str('JOB_ID', ''),
    target_url: str('TARGET_URL', ''),
    plan,
    overview: o,
    thresholds: th,
    thresholds_ok: Object.values(th).every((ok) => ok),
    metrics: data.metrics,
    state: data.state,
  };
  return { [str('SUMMARY_PATH', SUMMARY_PATH_DEFAULT)]: JSON.stringify(doc, null, 1), stdout: text(script, plan, o, th) };
}
