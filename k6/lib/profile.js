// Load profiles for the open model: every profile is an arrival-rate
// executor (requests start on schedule whatever the latency; when the VU cap
// is reached, k6 drops iterations and counts them in dropped_iterations).
//
//   PROFILE   constant | ramp | spike | burst | stochastic   (default constant)
//   RATE      requests per second (alias RPS, the seed's name)  (default 10)
//   DURATION  seconds or a k6 duration (the seed's durationSeconds) (default 30s)
//   ramp:       RAMP_FROM (1), RAMP_TO (RATE)
//   spike:      SPIKE_BASE (RATE), SPIKE_PEAK (5 x base), SPIKE_START (DURATION/3), SPIKE_LENGTH (DURATION/6)
//   burst:      BURST_PERIOD (10s), BURST_SIZE (5 x RATE extra requests), BURST_LENGTH (1s)
//   stochastic: Poisson arrivals with mean RATE: per-second counts drawn
//               from a PRNG seeded by SEED (1), so a run repeats exactly.
//   MAX_VUS, PRE_VUS   VU cap and pre-allocation (default from the peak rate)
//
// Rates are per second, rounded to whole requests.
import { num, seconds, str } from './env.js';

export function plan() {
  const profile = str('PROFILE', 'constant');
  const rate = num('RATE', num('RPS', 10));
  const duration = Math.max(1, Math.round(seconds(str('DURATION', '30s'))));
  if (!(rate >= 0)) throw new Error('RATE must be >= 0');
  let p;
  switch (profile) {
    case 'constant':
      p = { stages: [[rate, duration]] };
      break;
    case 'ramp':
      p = ramp(num('RAMP_FROM', 1), num('RAMP_TO', rate), duration);
      break;
    case 'spike':
      p = spike(rate, duration);
      break;
    case 'burst':
      p = burst(rate, duration);
      break;
    case 'stochastic':
      p = stochastic(rate, duration, num('SEED', 1));
      break;
    default:
      throw new Error(`PROFILE=${profile}: use constant, ramp, spike, burst or stochastic`);
  }
  return Object.assign({ profile, rate, duration }, p);
}

function ramp(from, to, duration) {
  return { from, to, linear: true, stages: [[from, 0], [to, duration]] };
}

function spike(rate, duration) {
  const base = num('SPIKE_BASE', rate);
  const peak = num('SPIKE_PEAK', base * 5);
  const start = Math.min(duration, Math.round(seconds(str('SPIKE_START', String(Math.floor(duration / 3))))));
  const length = Math.max(1, Math.min(duration - start, Math.round(seconds(str('SPIKE_LENGTH', String(Math.max(1, Math.floor(duration / 6))))))));
  return { base, peak, start, length, stages: [[base, start], [peak, length], [base, duration - start - length]] };
}

function burst(rate, duration) {
  const period = Math.max(1, Math.round(seconds(str('BURST_PERIOD', '10s'))));
  const size = num('BURST_SIZE', rate * 5);
  const length = Math.max(1, Math.min(period, Math.round(seconds(str('BURST_LENGTH', '1s')))));
  const stages = [];
  for (let t = 0; t < duration; t += period) {
    const on = Math.min(length, duration - t);
    stages.push([rate + size / length, on]);
    if (duration - t - on > 0) stages.push([rate, Math.min(period - on, duration - t - on)]);
  }
  return { period, size, length, stages };
}

// mulberry32: a tiny seeded PRNG, so a stochastic run can be repeated.
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// poisson draws a Poisson(lambda) count: Knuth's method for small lambda, a
// normal approximation above 30 (exp(-lambda) underflows for large lambda).
function poisson(lambda, rnd) {
  if (lambda <= 0) return 0;
  if (lambda < 30) {
    const l = Math.exp(-lambda);
    let k = 0;
    let p = 1;
    do {
      k++;
      p *= rnd();
    } while (p > l);
    return k - 1;
  }
  const u = Math.max(rnd(), 1e-12);
  const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
  return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * z));
}

function stochastic(rate, duration, seed) {
  const rnd = prng(seed);
  const counts = [];
  for (let i = 0; i < duration; i++) counts.push(poisson(rate, rnd));
  return { seed, counts, stages: counts.map((c) => [c, 1]) };
}

// scenario turns a plan into a k6 scenario for exec (the script's function).
export function scenario(p, exec) {
  const peak = Math.max(1, ...p.stages.map((s) => s[0]));
  const maxVUs = Math.round(num('MAX_VUS', Math.max(10, Math.min(2000, Math.ceil(peak)))));
  const preAllocatedVUs = Math.round(num('PRE_VUS', Math.min(maxVUs, Math.max(2, Math.ceil(peak / 10)))));
  if (p.profile === 'constant') {
    return { executor: 'constant-arrival-rate', exec, rate: Math.round(p.rate), timeUnit: '1s', duration: `${p.duration}s`, preAllocatedVUs, maxVUs };
  }
  // Step profiles hold each rate for its stage: a 0s stage jumps to the
  // rate, then a stage of the given length holds it. A linear ramp has just
  // one stage from RAMP_FROM to RAMP_TO.
  const stages = [];
  for (const [r, d] of p.stages) {
    if (!p.linear) stages.push({ target: Math.round(r), duration: '0s' });
    if (d > 0) stages.push({ target: Math.round(r), duration: `${d}s` });
  }
  return { executor: 'ramping-arrival-rate', exec, startRate: Math.round(p.stages[0][0]), timeUnit: '1s', stages, preAllocatedVUs, maxVUs };
}
