import ArgumentParser
import Foundation
import Inception

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List the networks: parameters, input size, where their weights come from, what they output.")

    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let rows: [[String: Any]] = ModelName.allCases.map { name in
            ["name": name.rawValue, "parameters": name.graph().parameterCount, "input_size": name.spec.inputSize,
             "weights": name.spec.weightsNote, "output": name.spec.outputNote]
        }
        if json { return try printJSON(rows) }
        let columns: [(String, Int)] = [("model", 30), ("parameters", 12), ("input", 7), ("weights", 50)]
        print(columns.map { $0.0.padding(toLength: $0.1, withPad: " ", startingAt: 0) }.joined() + "output")
        for row in rows {
            let cells = [row["name"] as! String, (row["parameters"] as! Int).grouped, "\(row["input_size"] as! Int)",
                         row["weights"] as! String]
            print(zip(cells, columns).map { $0.padding(toLength: $1.1, withPad: " ", startingAt: 0) }.joined()
                  + (row["output"] as! String))
        }
    }
}
