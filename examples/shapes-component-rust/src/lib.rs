//! A component called by its exports: geometry on records and variants, for
//! `wafer invoke NAME 'wafer:shapes/shapes#FUNC' --args '[...]'` (docs/components.md).

wit_bindgen::generate!({
    path: "wit",
    world: "shapes-world",
});

use exports::wafer::shapes::shapes::{Guest, Label, Point, Shape, Style, Unit};

struct Shapes;

export!(Shapes);

impl Guest for Shapes {
    fn area(shape: Shape) -> f64 {
        match shape {
            Shape::Circle(r) => std::f64::consts::PI * r * r,
            Shape::Rectangle((a, b)) => ((b.x - a.x) * (b.y - a.y)).abs(),
            // The shoelace formula.
            Shape::Polygon(points) => {
                let n = points.len();
                let twice: f64 = (0..n)
                    .map(|i| {
                        let (p, q) = (&points[i], &points[(i + 1) % n]);
                        p.x * q.y - q.x * p.y
                    })
                    .sum();
                twice.abs() / 2.0
            }
            Shape::Dot => 0.0,
        }
    }

    fn describe(shape: Shape, unit: Option<Unit>) -> String {
        let unit = match unit {
            Some(Unit::Mm) => " mm",
            Some(Unit::Cm) => " cm",
            Some(Unit::M) => " m",
            None => "",
        };
        match shape {
            Shape::Circle(r) => format!("a circle of radius {r}{unit}"),
            Shape::Rectangle((a, b)) => format!(
                "a rectangle of {}{unit} by {}{unit}",
                (b.x - a.x).abs(),
                (b.y - a.y).abs()
            ),
            Shape::Polygon(points) => format!("a polygon of {} points", points.len()),
            Shape::Dot => "a dot".to_owned(),
        }
    }

    fn bounding_box(points: Vec<Point>) -> Result<(Point, Point), String> {
        let first = points.first().ok_or("no points")?;
        let (mut low, mut high) = (first.clone(), first.clone());
        for p in &points {
            low.x = low.x.min(p.x);
            low.y = low.y.min(p.y);
            high.x = high.x.max(p.x);
            high.y = high.y.max(p.y);
        }
        Ok((low, high))
    }

    fn render(label: Label) -> String {
        let mut text = label.text;
        if label.style.contains(Style::BOLD) {
            text = format!("**{text}**");
        }
        if label.style.contains(Style::ITALIC) {
            text = format!("_{text}_");
        }
        if label.style.contains(Style::UNDERLINE) {
            text = format!("<u>{text}</u>");
        }
        match label.size {
            Some(size) => format!("{text} ({size}pt)"),
            None => text,
        }
    }

    fn count(text: String, c: char) -> u32 {
        text.chars().filter(|&x| x == c).count() as u32
    }

    fn checked_div(a: i64, b: i64) -> Result<i64, String> {
        a.checked_div(b)
            .ok_or_else(|| format!("cannot divide {a} by {b}"))
    }

    fn evens(values: Vec<u32>) -> Vec<bool> {
        values.iter().map(|v| v % 2 == 0).collect()
    }
}
