// Line charts on uPlot (assets/vendor/uplot, loaded as the global `uPlot` before this module).

const COLORS = ["#1f5fbf", "#c2571a", "#2e8540", "#8a3ab9"];

/** Unix seconds as local HH:MM (HH:MM:SS off the minute). */
function clock(t) {
  const d = new Date(t * 1000);
  const opts = { hour: "2-digit", minute: "2-digit", hour12: false };
  if (d.getSeconds()) opts.second = "2-digit";
  return d.toLocaleTimeString([], opts);
}

/**
 * A line chart in `container` that follows its width.
 * series: [{label, scale?, digits?}] (after x); axes: [{scale, label, side?}] for the y scales;
 * time: x is unix seconds (else a plain number such as a step); window: seconds of x shown (time only).
 */
export class LineChart {
  constructor(container, { series, axes, time = true, window = null, height = 240, xLabel = null }) {
    this.container = container;
    this.plot = null;
    this.height = height;
    const yScale = { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] };
    const scales = { x: { time } };
    if (time && window) scales.x.range = (u, min, max) => [(max ?? 0) - window, max ?? 0];
    for (const a of axes) scales[a.scale] = a.fromZero === false ? {} : yScale;
    this.opts = {
      width: this.width(),
      height,
      scales,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        time ? {} : { label: xLabel || "x" },
        ...series.map((s, i) => ({
          label: s.label,
          scale: s.scale || axes[0].scale,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          spanGaps: s.spanGaps ?? false,
          points: { show: s.points ?? false },
          value: (u, v) => (v === null || v === undefined ? "—" : v.toFixed(s.digits ?? 2)),
        })),
      ],
      axes: [
        time ? { space: 80, values: (u, splits) => splits.map(clock) } : { label: xLabel },
        ...axes.map((a, i) => ({
          scale: a.scale,
          label: a.label,
          side: a.side ?? (i === 0 ? 3 : 1),
          grid: { show: i === 0 },
          size: 60,
        })),
      ],
    };
    this.observer = new ResizeObserver(() => {
      if (this.plot && this.container.clientWidth) this.plot.setSize({ width: this.width(), height: this.height });
    });
    this.observer.observe(container);
  }

  width() {
    return Math.max(320, (this.container.clientWidth || 800) - 8);
  }

  /** data: [xs, ys1, ys2, ...] (arrays of equal length; null for a gap). */
  setData(data) {
    if (typeof uPlot === "undefined") throw new Error("the chart library (assets/vendor/uplot) did not load");
    if (!this.plot) {
      this.plot = new uPlot({ ...this.opts, width: this.width() }, data, this.container);
    } else {
      this.plot.setData(data);
    }
  }

  destroy() {
    this.observer.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

/**
 * Requests/s and tokens/s from cumulative history points ({time, requests, tokens, ...}, oldest
 * first): each rate is the difference of two consecutive points over their time difference, placed at
 * the later point; a counter that went down (the deployment was redeployed) leaves a gap.
 * Answers [times, requests/s, tokens/s].
 */
export function rates(points) {
  const xs = [];
  const rps = [];
  const tps = [];
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1];
    const b = points[i];
    const dt = b.time - a.time;
    if (!(dt > 0)) continue;
    const rate = (key) => {
      const d = (b[key] ?? 0) - (a[key] ?? 0);
      return d >= 0 ? d / dt : null;
    };
    xs.push(b.time);
    rps.push(rate("requests"));
    tps.push(rate("tokens"));
  }
  return [xs, rps, tps];
}
