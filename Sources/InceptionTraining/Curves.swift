import Foundation

/// Training loss (left axis) and accuracies (right axis, 0–1) by epoch, as a small SVG: one run, or several
/// (labelled, each in its own dash pattern) to compare them in one picture.
public func curvesSVG(_ history: [EpochMetrics], title: String = "") -> String { curvesSVG([(title, history)]) }

public func curvesSVG(_ runs: [(label: String, history: [EpochMetrics])]) -> String {
    let (width, height, margin, legend) = (640.0, 360.0, 50.0, 16.0 * Double(runs.count))
    let all = runs.flatMap(\.history)
    let epochs = Double(max(all.map(\.epoch).max() ?? 1, 1))
    let maxLoss = max(all.map(\.trainLoss).filter(\.isFinite).max() ?? 1, 1e-9)
    let dashes = ["", "8,4", "2,3", "12,3,2,3"]
    func x(_ e: Int) -> Double { margin + (width - 2 * margin) * Double(e) / epochs }
    func y(_ v: Double, _ top: Double) -> Double { height + legend - margin - (height - 2 * margin) * v / top }
    func path(_ points: [(Int, Double)], _ top: Double, _ colour: String, _ dash: String) -> String {
        guard !points.isEmpty else { return "" }
        // One epoch is a point, not a line of no length (which draws nothing).
        if points.count == 1 {
            return "<circle cx=\"\(x(points[0].0))\" cy=\"\(y(points[0].1, top))\" r=\"4\" fill=\"\(colour)\"/>"
        }
        let d = points.enumerated()
            .map { "\($0.offset == 0 ? "M" : "L")\(x($0.element.0)),\(y($0.element.1, top))" }
            .joined(separator: " ")
        return """
            <path d=\"\(d)\" fill=\"none\" stroke=\"\(colour)\" \
            stroke-width=\"2\"\(dash.isEmpty ? "" : " stroke-dasharray=\"\(dash)\"")/>
            """
    }
    var svg = """
        <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height + legend))\" \
        font-family=\"sans-serif\" font-size=\"12\">
        """
    svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    svg += """
        <line x1=\"\(margin)\" y1=\"\(height + legend - margin)\" x2=\"\(width - margin)\" \
        y2=\"\(height + legend - margin)\" stroke=\"black\"/>
        """
    svg += """
        <text x=\"\(width / 2)\" y=\"\(height + legend - 15)\" text-anchor=\"middle\">epoch (1–\(Int(epochs)))</text>
        """
    svg += """
        <text x=\"\(margin)\" y=\"20\">training loss (blue, 0–\(String(format: "%.2f", maxLoss))), train accuracy \
        (orange), validation accuracy (green), 0–1</text>
        """
    for (r, run) in runs.enumerated() {
        let dash = dashes[r % dashes.count]
        if !run.label.isEmpty {
            let top = 22 + 16 * Double(r + 1)
            svg += """
                <line x1=\"\(margin)\" y1=\"\(top - 4)\" x2=\"\(margin + 40)\" y2=\"\(top - 4)\" stroke=\"black\" \
                stroke-width=\"2\"\(dash.isEmpty ? "" : " stroke-dasharray=\"\(dash)\"")/>
                """
            svg += "<text x=\"\(margin + 48)\" y=\"\(top)\">\(run.label)</text>"
        }
        svg += path(run.history.map { ($0.epoch, $0.trainLoss) }, maxLoss, "#1f77b4", dash)
        svg += path(run.history.map { ($0.epoch, $0.trainAccuracy) }, 1, "#ff7f0e", dash)
        svg += path(run.history.compactMap { m in m.validationAccuracy.map { (m.epoch, $0) } }, 1, "#2ca02c", dash)
    }
    return svg + "</svg>\n"
}
