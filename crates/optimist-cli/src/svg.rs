//! Line plots as self-contained SVG (no fonts or system libraries needed).

use std::fmt::Write;

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

/// One line of a panel: a median line and, optionally, a band (lower and
/// upper values at the same x) drawn under it.
pub struct BandSeries {
    pub name: String,
    /// (x, median) points.
    pub points: Vec<(f64, f64)>,
    /// (x, low, high) points of the band (empty: none).
    pub band: Vec<(f64, f64, f64)>,
    /// Draw as a step function (performance profiles).
    pub step: bool,
}

/// Small multiples: one panel per group of series, all on the same axes,
/// with a reference series (dashed black) repeated in every panel and each
/// panel's legend written below it in full (never cut off).
pub struct Panels {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    /// (panel title, its series).
    pub panels: Vec<(String, Vec<BandSeries>)>,
    /// Drawn in every panel, dashed black, and named in every legend.
    pub reference: Option<BandSeries>,
    /// A horizontal line (the target) with its label.
    pub hline: Option<(f64, String)>,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
}

/// Colours for up to 10 series per panel (Tableau 10).
const PANEL_COLORS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

impl Panels {
    /// The x and y ranges (y in plot units, log10 when `log_y`).
    fn ranges(&self) -> (f64, f64, f64, f64) {
        let ty = |y: f64| if self.log_y { y.max(1e-300).log10() } else { y };
        let (mut x0, mut x1, mut y0, mut y1) = (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        );
        let all = self
            .panels
            .iter()
            .flat_map(|p| p.1.iter())
            .chain(self.reference.iter());
        for ser in all {
            for &(x, y) in &ser.points {
                if x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0) {
                    x0 = x0.min(x);
                    x1 = x1.max(x);
                    y0 = y0.min(ty(y));
                    y1 = y1.max(ty(y));
                }
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
        (x0, x1, y0 - pad, y1 + pad)
    }

    /// Renders the panels in a grid of up to 3 columns.
    pub fn to_svg(&self) -> String {
        let cols = self.panels.len().clamp(1, 3);
        let rows = self.panels.len().div_ceil(cols).max(1);
        let (pw, ph) = (300.0, 190.0);
        let (left, right, top_title) = (64.0, 20.0, 44.0);
        let line_h = 15.0;
        // Legend: two names per line under each panel.
        let legend_lines = |n: usize| (n + 1).div_ceil(2);
        let row_heights: Vec<f64> = (0..rows)
            .map(|r| {
                let most = (0..cols)
                    .filter_map(|c| self.panels.get(r * cols + c))
                    .map(|p| legend_lines(p.1.len() + usize::from(self.reference.is_some())))
                    .max()
                    .unwrap_or(1);
                22.0 + ph + 36.0 + most as f64 * line_h + 12.0
            })
            .collect();
        let cell_w = left + pw + right;
        // Wide enough for the title (about 9 px per character at 16 px).
        let w = (cols as f64 * cell_w + 10.0).max(self.title.chars().count() as f64 * 9.0 + 20.0);
        let h = top_title + row_heights.iter().sum::<f64>() + 10.0;
        let (x0, x1, y0, y1) = self.ranges();
        let ty = |y: f64| if self.log_y { y.max(1e-300).log10() } else { y };
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="{:.1}" y="26" text-anchor="middle" font-size="16">{}</text>
"#,
            w / 2.0,
            esc(&self.title)
        );
        let yticks: Vec<(f64, String)> = if self.log_y {
            let (a, b) = (y0.ceil() as i32, y1.floor() as i32);
            if b - a >= 1 {
                let stride = ((b - a) / 5 + 1).max(1);
                (a..=b)
                    .step_by(stride as usize)
                    .map(|e| (10f64.powi(e), format!("1e{e}")))
                    .collect()
            } else {
                nice_ticks(10f64.powf(y0), 10f64.powf(y1), 4)
                    .into_iter()
                    .filter(|v| *v > 0.0)
                    .map(|v| (v, fmt_tick(v)))
                    .collect()
            }
        } else {
            nice_ticks(y0, y1, 4)
                .into_iter()
                .map(|v| (v, fmt_tick(v)))
                .collect()
        };
        let mut row_top = top_title;
        for (pi, (ptitle, series)) in self.panels.iter().enumerate() {
            let (r, c) = (pi / cols, pi % cols);
            if c == 0 && r > 0 {
                row_top += row_heights[r - 1];
            }
            let ox = 5.0 + c as f64 * cell_w + left;
            let oy = row_top + 22.0;
            let sx = |x: f64| ox + (x - x0) / (x1 - x0) * pw;
            let sy = |y: f64| oy + (1.0 - (ty(y) - y0) / (y1 - y0)) * ph;
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13" font-weight="bold">{}</text>
<rect x="{ox:.1}" y="{oy:.1}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##,
                ox + pw / 2.0,
                oy - 7.0,
                esc(ptitle)
            );
            for t in nice_ticks(x0, x1, 4) {
                let x = sx(t);
                let _ = writeln!(
                    s,
                    r##"<line x1="{x:.1}" y1="{oy:.1}" x2="{x:.1}" y2="{:.1}" stroke="#e4e4e4"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    oy + ph,
                    oy + ph + 13.0,
                    fmt_tick(t)
                );
            }
            for (v, label) in &yticks {
                let y = sy(*v);
                let _ = writeln!(
                    s,
                    r##"<line x1="{ox:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
                    ox + pw,
                    ox - 4.0,
                    y + 4.0
                );
            }
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}</text><text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle" fill="#333">{}</text>"##,
                ox + pw / 2.0,
                oy + ph + 27.0,
                esc(&self.x_label),
                ox - 48.0,
                oy + ph / 2.0,
                esc(&self.y_label)
            );
            if let Some((t, label)) = &self.hline {
                if t.is_finite() && (!self.log_y || *t > 0.0) {
                    let y = sy(*t);
                    let _ = writeln!(
                        s,
                        r##"<line x1="{ox:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#888" stroke-dasharray="2,3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#666">{}</text>"##,
                        ox + pw,
                        ox + pw - 3.0,
                        y - 3.0,
                        esc(label)
                    );
                }
            }
            let _ = writeln!(
                s,
                r#"<clipPath id="p{pi}"><rect x="{ox:.1}" y="{oy:.1}" width="{pw}" height="{ph}"/></clipPath><g clip-path="url(#p{pi})">"#
            );
            let path = |ser: &BandSeries| -> String {
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
                d
            };
            let band = |ser: &BandSeries| -> String {
                let ok: Vec<&(f64, f64, f64)> = ser
                    .band
                    .iter()
                    .filter(|b| {
                        b.0.is_finite()
                            && b.1.is_finite()
                            && b.2.is_finite()
                            && (!self.log_y || b.1 > 0.0)
                    })
                    .collect();
                if ok.len() < 2 {
                    return String::new();
                }
                let mut d = String::new();
                for (i, b) in ok.iter().enumerate() {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1}",
                        if i == 0 { "M" } else { " L" },
                        sx(b.0),
                        sy(b.2)
                    );
                }
                for b in ok.iter().rev() {
                    let _ = write!(d, " L{:.1},{:.1}", sx(b.0), sy(b.1));
                }
                d.push_str(" Z");
                d
            };
            for (i, ser) in series.iter().enumerate() {
                let color = PANEL_COLORS[i % PANEL_COLORS.len()];
                let d = band(ser);
                if !d.is_empty() {
                    let _ = writeln!(
                        s,
                        r#"<path d="{d}" fill="{color}" fill-opacity="0.15" stroke="none"/>"#
                    );
                }
            }
            if let Some(rf) = &self.reference {
                let d = band(rf);
                if !d.is_empty() {
                    let _ = writeln!(
                        s,
                        r##"<path d="{d}" fill="#000" fill-opacity="0.08" stroke="none"/>"##
                    );
                }
                let d = path(rf);
                if !d.is_empty() {
                    let _ = writeln!(
                        s,
                        r##"<path d="{d}" fill="none" stroke="#000" stroke-width="1.6" stroke-dasharray="5,3"/>"##
                    );
                }
            }
            for (i, ser) in series.iter().enumerate() {
                let color = PANEL_COLORS[i % PANEL_COLORS.len()];
                let d = path(ser);
                if !d.is_empty() {
                    let _ = writeln!(
                        s,
                        r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="1.7"/>"#
                    );
                }
            }
            let _ = writeln!(s, "</g>");
            // Legend below the panel, two columns, every name in full.
            let mut entries: Vec<(String, &str, bool)> = series
                .iter()
                .enumerate()
                .map(|(i, ser)| {
                    (
                        ser.name.clone(),
                        PANEL_COLORS[i % PANEL_COLORS.len()],
                        false,
                    )
                })
                .collect();
            if let Some(rf) = &self.reference {
                entries.push((format!("{} (reference)", rf.name), "#000", true));
            }
            for (i, (name, color, dashed)) in entries.iter().enumerate() {
                let lx = ox - 40.0 + (i % 2) as f64 * (pw / 2.0 + 20.0);
                let ly = oy + ph + 44.0 + (i / 2) as f64 * line_h;
                let dash = if *dashed {
                    r#" stroke-dasharray="5,3""#
                } else {
                    ""
                };
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"{dash}/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
                    ly - 4.0,
                    lx + 18.0,
                    ly - 4.0,
                    lx + 23.0,
                    esc(name)
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}
