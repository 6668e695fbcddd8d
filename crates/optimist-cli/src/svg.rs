//! Line plots as self-contained SVG (no fonts or system libraries needed).

use std::fmt::Write;

/// One line of a plot.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Draw as a step function (performance profiles).
    pub step: bool,
}

/// A line plot.
pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    pub series: Vec<Series>,
    /// A horizontal reference line (the target) with its label.
    pub hline: Option<(f64, String)>,
    /// Fixed x range (else from the data).
    pub x_range: Option<(f64, f64)>,
    /// Fixed y range (else from the data).
    pub y_range: Option<(f64, f64)>,
}

const COLORS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
    "#e6550d", "#31a354", "#756bb1", "#636363",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.is_nan() || lo.is_nan() || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + 1e-9 * step {
        out.push(t);
        t += step;
    }
    out
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e4 || v.abs() < 1e-2 {
        format!("{v:.0e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl Plot {
    /// Renders the plot as an SVG document.
    pub fn to_svg(&self) -> String {
        let (w, h) = (860.0, 480.0);
        let (left, right, top, bottom) = (80.0, 200.0, 40.0, 60.0);
        let (pw, ph) = (w - left - right, h - top - bottom);
        let ty = |y: f64| if self.log_y { y.max(1e-300).log10() } else { y };
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite() && (!self.log_y || p.1 > 0.0));
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(ty(y));
            y1 = y1.max(ty(y));
        }
        if let Some((t, _)) = &self.hline {
            if t.is_finite() && (!self.log_y || *t > 0.0) {
                y0 = y0.min(ty(*t));
                y1 = y1.max(ty(*t));
            }
        }
        if let Some((a, b)) = self.x_range {
            (x0, x1) = (a, b);
        }
        if let Some((a, b)) = self.y_range {
            (y0, y1) = (ty(a), ty(b));
        }
        if !x0.is_finite() || !x1.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if !y0.is_finite() || !y1.is_finite() {
            (y0, y1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        let pad = 0.03 * (y1 - y0);
        let (y0, y1) = (y0 - pad, y1 + pad);
        let sx = |x: f64| left + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| top + (1.0 - (ty(y) - y0) / (y1 - y0)) * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
"#,
            left + pw / 2.0,
            esc(&self.title)
        );
        // Axes and ticks.
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
        );
        for t in nice_ticks(x0, x1, 6) {
            let x = sx(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                top + ph,
                top + ph + 16.0,
                fmt_tick(t)
            );
        }
        let yticks: Vec<(f64, String)> = if self.log_y {
            let (a, b) = (y0.ceil() as i32, y1.floor() as i32);
            if b - a >= 1 {
                let stride = ((b - a) / 8 + 1).max(1);
                (a..=b)
                    .step_by(stride as usize)
                    .map(|e| (10f64.powi(e), format!("1e{e}")))
                    .collect()
            } else {
                // Less than two decades: plain ticks placed on the log scale.
                nice_ticks(10f64.powf(y0), 10f64.powf(y1), 5)
                    .into_iter()
                    .filter(|v| *v > 0.0)
                    .map(|v| (v, fmt_tick(v)))
                    .collect()
            }
        } else {
            nice_ticks(y0, y1, 6)
                .into_iter()
                .map(|v| (v, fmt_tick(v)))
                .collect()
        };
        for (v, label) in yticks {
            let y = sy(v);
            let _ = writeln!(
                s,
                r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
                left + pw,
                left - 6.0,
                y + 4.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            left + pw / 2.0,
            h - 18.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            top + ph / 2.0,
            esc(&self.y_label)
        );
        if let Some((t, label)) = &self.hline {
            if t.is_finite() && (!self.log_y || *t > 0.0) {
                let y = sy(*t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#000" stroke-dasharray="6,4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#000">{}</text>"##,
                    left + pw,
                    left + pw - 4.0,
                    y - 4.0,
                    esc(label)
                );
            }
        }
        // Lines, clipped to the plot area.
        let _ = writeln!(
            s,
            r#"<clipPath id="area"><rect x="{left}" y="{top}" width="{pw}" height="{ph}"/></clipPath><g clip-path="url(#area)">"#
        );
        for (i, ser) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut d = String::new();
            let mut prev: Option<(f64, f64)> = None;
            for &(x, y) in &ser.points {
                if !(x.is_finite() && y.is_finite()) || (self.log_y && y <= 0.0) {
                    prev = None;
                    continue;
                }
                let (px, py) = (sx(x), sy(y));
                match prev {
                    None => {
                        let _ = write!(d, "M{px:.1},{py:.1}");
                    }
                    Some((_, ly)) if ser.step => {
                        let _ = write!(d, " L{px:.1},{ly:.1} L{px:.1},{py:.1}");
                    }
                    Some(_) => {
                        let _ = write!(d, " L{px:.1},{py:.1}");
                    }
                }
                prev = Some((px, py));
            }
            if !d.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="1.6"/>"#
                );
            }
        }
        let _ = writeln!(s, "</g>");
        // Legend.
        for (i, ser) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let y = top + 8.0 + 17.0 * i as f64;
            let x = left + pw + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                x + 22.0,
                x + 28.0,
                y + 4.0,
                esc(&ser.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}
