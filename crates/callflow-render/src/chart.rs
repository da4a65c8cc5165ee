//! The quality chart of a stream or a call: jitter, loss and MOS over time from the streams' timeline intervals, as SVG.
//!
//! Three panels share the time axis (seconds from the first interval's start; each point
//! in the middle of its interval): the largest
//! interarrival jitter of each interval (ms), its effective loss (lost and late packets
//! over those expected, %), and its MOS. A stream's timeline has no MOS per interval, so
//! it is estimated with the stream's own E-model inputs ([`Quality`]: Ie, Bpl, burst
//! ratio, delay) and the interval's loss, anchored so that the stream's average loss gives
//! exactly the stream's MOS ([`interval_mos`]); a stream without a quality object has no
//! MOS line. One colour per stream, named in the legend.

use crate::escape::{date_time, elide, xml};
use callflow_correlate::quality::{mos_from_r, r_factor, CodecImpairment, EModelInputs};
use callflow_model::{MediaStream, Quality, Timestamp};
use std::fmt::Write;

const WIDTH: f64 = 920.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const PANEL_H: f64 = 150.0;
const PANEL_GAP: f64 = 56.0;
const PALETTE: [&str; 6] = ["#1d4ed8", "#c2410c", "#15803d", "#7c3aed", "#b91c1c", "#0f766e"];

/// The E-model inputs of `q`'s stream with `ppl` percent effective loss.
fn inputs(q: &Quality, ppl: f64) -> EModelInputs {
    let wideband = q.method.is_wideband();
    EModelInputs {
        codec: CodecImpairment { ie: q.codec_ie, bpl: q.bpl, wideband },
        ppl,
        burst_r: q.burst_ratio,
        delay_ms: q.delay_ms,
    }
}

/// The MOS of an interval with effective loss `loss_pct`, for a stream whose whole-stream
/// figures are `q`: the stream's E-model (`callflow_correlate::quality`) with the
/// interval's loss, shifted so that the stream's own loss gives the stream's own R.
pub fn interval_mos(q: &Quality, loss_pct: f64) -> f64 {
    let wideband = q.method.is_wideband();
    let offset = q.r_factor - r_factor(&inputs(q, q.loss_pct));
    mos_from_r(r_factor(&inputs(q, loss_pct.clamp(0.0, 100.0))) + offset, wideband).clamp(1.0, 4.5)
}

/// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `ticks` ticks over `range`.
fn step(range: f64, ticks: f64) -> f64 {
    if range.is_nan() || range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / ticks;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

/// One interval's point: seconds from the origin, jitter ms, loss %, MOS.
type Point = (f64, f64, f64, Option<f64>);

/// What a panel plots, and its name and value range.
type Panel = (&'static str, f64, f64, fn(&Point) -> Option<f64>);

struct Series {
    points: Vec<Point>,
    label: String,
}

/// The chart of `streams` (one stream, or every stream of a call) as an SVG document,
/// titled `title`.
pub fn render(title: &str, streams: &[&MediaStream]) -> String {
    let origin: Option<Timestamp> = streams.iter().flat_map(|s| s.timeline.first()).map(|i| i.start).min();
    // The intervals' length: the smallest step between two of a stream (5 s by default
    // when each stream has one interval). A point stands in the middle of its interval.
    let width = streams
        .iter()
        .flat_map(|s| s.timeline.windows(2).map(|w| w[1].start.millis_since(w[0].start) / 1000.0))
        .filter(|d| *d > 0.0)
        .fold(None, |min: Option<f64>, d| Some(min.map_or(d, |m| m.min(d))))
        .unwrap_or(5.0);
    let series: Vec<Series> = streams
        .iter()
        .map(|s| {
            let points = s
                .timeline
                .iter()
                .map(|i| {
                    let t = origin.map_or(0.0, |o| i.start.millis_since(o) / 1000.0) + width / 2.0;
                    let expected = (i.packets + i.lost) as f64;
                    let loss = if expected > 0.0 { (i.lost + i.late) as f64 * 100.0 / expected } else { 0.0 };
                    (t, i.max_jitter_ms, loss.min(100.0), s.quality.as_ref().map(|q| interval_mos(q, loss)))
                })
                .collect();
            let mos = s.quality.as_ref().map(|q| format!(", MOS {:.2}", q.mos)).unwrap_or_default();
            Series { points, label: format!("{} → {} {}{mos}", s.src, s.dst, s.codec) }
        })
        .collect();
    let t_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.0 + width / 2.0)).fold(0.0f64, f64::max).max(1.0);
    let jitter_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0f64, f64::max).max(10.0);
    let loss_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.2)).fold(0.0f64, f64::max).max(5.0);
    let legend_h = 18.0 * series.len() as f64;
    let top = 56.0 + legend_h;
    let height = top + 3.0 * (PANEL_H + PANEL_GAP) + 10.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + t / t_max * plot_w;

    let mut s = String::with_capacity(8192);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    s.push_str(r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = write!(
        s,
        r##"<text x="12" y="24" font-size="15" font-weight="bold" fill="#111827">{}</text>"##,
        xml(&elide(title, 100))
    );
    let subtitle = match origin {
        Some(o) => format!("from {} · one point per timeline interval", date_time(o)),
        None => "no timeline intervals: the streams have no per-interval figures".to_string(),
    };
    let _ = write!(s, r##"<text x="12" y="42" fill="#4b5563" font-size="11">{}</text>"##, xml(&subtitle));
    for (k, series) in series.iter().enumerate() {
        let y = 60.0 + 18.0 * k as f64;
        let c = PALETTE[k % PALETTE.len()];
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="3"/><text x="{:.1}" y="{y:.1}" fill="#111827">{}</text>"##,
            y - 4.0,
            LEFT + 24.0,
            y - 4.0,
            LEFT + 32.0,
            xml(&elide(&series.label, 100))
        );
    }
    let panels: [Panel; 3] = [
        ("jitter (ms)", 0.0, jitter_max * 1.1, |p| Some(p.1)),
        ("loss (%)", 0.0, loss_max * 1.1, |p| Some(p.2)),
        ("MOS", 1.0, 4.5, |p| p.3),
    ];
    for (n, (name, lo, hi, value)) in panels.iter().enumerate() {
        let y0 = top + n as f64 * (PANEL_H + PANEL_GAP);
        let y = |v: f64| y0 + PANEL_H - (v - lo) / (hi - lo) * PANEL_H;
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{y0:.1}" width="{plot_w:.1}" height="{PANEL_H}" fill="#f9fafb" stroke="#d1d5db"/>"##
        );
        // The y axis: ticks, grid and the quantity's name turned along it.
        let ys = step(hi - lo, 4.0);
        let mut v = (lo / ys).ceil() * ys;
        while v <= *hi + 1e-9 {
            let yy = y(v);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#4b5563" font-size="11">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                yy + 4.0,
                trim_number(v)
            );
            v += ys;
        }
        let _ = write!(
            s,
            r##"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle" font-weight="bold" fill="#111827">{name}</text>"##,
            y0 + PANEL_H / 2.0
        );
        // The x axis under each panel, in seconds from the first interval.
        let xs = step(t_max, 8.0);
        let mut t = 0.0;
        while t <= t_max + 1e-9 {
            let xx = x(t);
            let _ = write!(
                s,
                r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#9ca3af"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#4b5563" font-size="11">{}</text>"##,
                y0 + PANEL_H,
                y0 + PANEL_H + 4.0,
                y0 + PANEL_H + 16.0,
                trim_number(t)
            );
            t += xs;
        }
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#4b5563" font-size="11">time (s)</text>"##,
            LEFT + plot_w,
            y0 + PANEL_H + 32.0
        );
        for (k, series) in series.iter().enumerate() {
            let c = PALETTE[k % PALETTE.len()];
            let pts: Vec<String> = series
                .points
                .iter()
                .filter_map(|p| value(p).map(|v| format!("{:.1},{:.1}", x(p.0), y(v.clamp(*lo, *hi)))))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let _ = write!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2" stroke-linejoin="round"/>"#,
                pts.join(" ")
            );
            for (p, text) in series.points.iter().zip(&pts) {
                let Some(v) = value(p) else { continue };
                let (px, py) = text.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    s,
                    r#"<circle cx="{px}" cy="{py}" r="2.5" fill="{c}"><title>{} s: {} {}</title></circle>"#,
                    trim_number(p.0),
                    trim_number((v * 100.0).round() / 100.0),
                    name
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// `v` without trailing zeros: `5`, `2.5`, `0.25`.
fn trim_number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g711() -> Quality {
        Quality {
            mos: 4.41,
            r_factor: 93.2,
            method: callflow_model::QualityMethod::EModel,
            codec_ie: 0.0,
            bpl: 25.1,
            loss_pct: 0.0,
            late_pct: 0.0,
            burst_ratio: 1.0,
            delay_ms: 0.0,
            jitter_buffer_ms: 60.0,
        }
    }

    #[test]
    fn interval_mos_follows_the_e_model() {
        let q = g711();
        // R 93.2 is MOS 4.41 by G.107's conversion.
        assert!((interval_mos(&q, 0.0) - 4.41).abs() < 0.01, "{}", interval_mos(&q, 0.0));
        // 10 % random loss on G.711 with PLC: Ie,eff = 95 * 10 / 35.1 = 27.07, R = 66.1, MOS 3.41.
        assert!((interval_mos(&q, 10.0) - 3.41).abs() < 0.02, "{}", interval_mos(&q, 10.0));
        assert!(interval_mos(&q, 100.0) >= 1.0);
    }

    #[test]
    fn the_stream_average_gives_the_stream_mos() {
        // A stream scored by refinements this chart does not know: its own figures anchor the line.
        let q = Quality { r_factor: 80.0, mos: 4.02, loss_pct: 2.0, ..g711() };
        assert!((interval_mos(&q, 2.0) - mos_from_r(80.0, false)).abs() < 1e-9);
        assert!(interval_mos(&q, 5.0) < interval_mos(&q, 2.0));
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(step(30.0, 8.0), 5.0);
        assert_eq!(step(4.5 - 1.0, 4.0), 1.0);
        assert_eq!(step(0.0, 4.0), 1.0);
        assert_eq!(trim_number(2.50), "2.5");
    }
}
