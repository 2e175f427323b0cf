import ArgumentParser
import Foundation
import Inception

@main
struct InceptionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inception",
        abstract: "Inception-v4 and Inception-ResNet (arXiv 1602.07261) on the CPU, in Swift.",
        subcommands: [Classify.self, Embed.self, Evaluate.self, Preprocess.self, Predict.self, Summary.self, Bench.self,
                      Serve.self, Train.self, Curves.self, Models.self])

    /// A level forced with INCEPTION_ISA that this CPU cannot run is refused before anything else (one line).
    static func main() async {
        if let problem = Kernels.environmentProblem {
            FileHandle.standardError.write(Data("error: \(problem)\n".utf8))
            Foundation.exit(1)
        }
        await main(nil)
    }
}

extension ModelName: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}

struct ModelOption: ParsableArguments {
    @Option(help: "The network: \(ModelName.allValueStrings.joined(separator: ", ")).")
    var model: ModelName = .inceptionV4
}

struct ThreadsOption: ParsableArguments {
    @Option(name: .customLong("threads"), help: "Worker threads (default: all cores).")
    var requested: Int?

    /// The threads to use: `--threads`, else all cores.
    var threads: Int { requested ?? Parallel.defaultThreads }

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    }
}

/// Runs a command body; any error becomes one line on standard error and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch { throw reported(error) }
}

/// An error as the command line reports it: one line on standard error, exit status 1 (an exit code passes through).
func reported(_ error: any Error) -> any Error {
    if error is ExitCode { return error }
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    return ExitCode(1)
}

func printJSON(_ object: Any) throws {
    let data = try JSON.data(object, pretty: true)
    print(String(decoding: data, as: UTF8.self))
}

/// A command-line problem, reported as its one line.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
