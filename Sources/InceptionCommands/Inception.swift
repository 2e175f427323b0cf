import ArgumentParser
import Foundation
import InceptionTraining
import Inception

/// The `inception` command and its subcommands; the executable calls `launch()`.
public struct InceptionCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "inception",
        abstract: "Inception-v4 and Inception-ResNet (arXiv 1602.07261) on the CPU, in Swift.",
        version: InceptionCommand.version,
        subcommands: [Classify.self, Embed.self, Evaluate.self, Preprocess.self, Predict.self, Summary.self, Bench.self,
                      Serve.self, Train.self, Curves.self, Models.self, Init.self,
                      Convert.self, Export.self, Quantize.self])

    /// The package's version, as `inception --version` prints it.
    public static let version = InceptionPackage.version

    public init() {}

    /// Parses the process's arguments and runs the command. A level forced with INCEPTION_ISA that this CPU cannot
    /// run is refused before anything else (one line).
    public static func launch() async {
        if let problem = Kernels.environmentProblem {
            FileHandle.standardError.write(Data("error: \(problem)\n".utf8))
            Foundation.exit(1)
        }
        await main(nil)
    }

    /// The help text of `inception` (nil) or of one of its subcommands, as `--help` prints it at that width.
    public static func help(_ subcommand: String? = nil, columns: Int = 100) -> String? {
        guard let subcommand else { return helpMessage(columns: columns) }
        let type = configuration.subcommands.first { $0._commandName == subcommand }
        return type.map { helpMessage(for: $0, columns: columns) }
    }
}

extension ModelName: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}

struct ModelOption: ParsableArguments {
    @Option(name: .customLong("model"), help: """
        The network (`inception models` lists them; default: inception_v4, or the one a --weights file names).
        """)
    var requested: ModelName?

    var model: ModelName { requested ?? .inceptionV4 }

    /// The network for a weights file: `--model`, else the one the file's metadata names (a checkpoint of
    /// `inception train`, `init` or `convert`), else Inception-v4.
    func model(for weights: URL) throws -> ModelName {
        try requested ?? CheckpointMetadata(contentsOf: weights).model ?? .inceptionV4
    }
}

extension Precision: ExpressibleByArgument {}

struct PrecisionOption: ParsableArguments {
    @Option(help: """
        The convolutions' arithmetic: fp32, bf16 (any checkpoint, converted at load; needs AVX512-BF16) or int8 (a \
        checkpoint from `inception quantize`).
        """)
    var precision: Precision = .fp32

    /// Refuses, before any weights are read, a precision this CPU cannot run (one line naming what it lacks).
    func check() throws {
        if let problem = ReducedKernels.problem(precision) { throw CLIError(problem) }
    }
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

/// An error as the command line reports it: one line on standard error, with the option that answers it where
/// there is one, and exit status 1 (an exit code passes through).
func reported(_ error: any Error) -> any Error {
    if error is ExitCode { return error }
    let hint = commandLineHint(for: error).map { " (\($0))" } ?? ""
    FileHandle.standardError.write(Data("error: \(error)\(hint)\n".utf8))
    return ExitCode(1)
}

/// What the command line adds to a library error: the option that answers it. The library's messages name no
/// option, since a library user has none.
func commandLineHint(for error: any Error) -> String? {
    switch error {
    case let WeightsError.otherModel(_, other): return "use --model \(other)"
    case HubError.noReleasedWeights: return "pass --weights FILE"
    case HubError.network, HubError.offlineNotCached, HubError.notFound, HubError.httpStatus:
        return "to run without the Hub: pass --weights FILE (safetensors or a PyTorch .pt/.pth/.bin; `inception "
            + "init` writes a random one), set HF_ENDPOINT to a reachable mirror, or put the weights in the Hub "
            + "cache, \(HubClient().cacheDirectory.path)"
    case TrainingError.nonFiniteLoss: return "--skip-nonfinite skips such batches"
    case TrainingError.diverged: return "lower --lr, or --clip-norm the gradients"
    case TrainingError.runExists: return "--resume continues it, --overwrite starts a new one there"
    case PrecisionError.needsQuantizedWeights:
        return "`inception quantize --calibration DIR` makes one; this checkpoint runs with --precision fp32 or bf16"
    default: return nil
    }
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
