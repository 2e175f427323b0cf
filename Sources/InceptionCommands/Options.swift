import ArgumentParser
import Foundation
import Inception
import InceptionEngine
import InceptionIO

// Every option group of the command line, in one place: which network, its weights (one or an ensemble), the
// precision, the threads, and the images a command runs on.

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
    /// `inception train`, `init` or `convert`), else `fallback` (Inception-v4; the face model for the face commands).
    func model(for weights: URL, fallback: ModelName = .inceptionV4) throws -> ModelName {
        try requested ?? CheckpointMetadata(contentsOf: weights).model ?? fallback
    }
}

extension Precision: ExpressibleByArgument {}

struct PrecisionOption: ParsableArguments {
    @Option(help: """
        The convolutions' arithmetic: fp32, bf16 (any checkpoint, converted at load; needs AMX or AVX512-BF16) or \
        int8 (a checkpoint from `inception quantize`; on AMX where the CPU has it).
        """)
    var precision: Precision = .fp32

    /// The precision checked against this CPU (refused in one line naming what it lacks): call it before any
    /// weights are read, and hand the route to what loads them.
    func route() throws -> PrecisionRoute { try PrecisionRoute(precision) }
}

struct ThreadsOption: ParsableArguments {
    @Option(name: .customLong("threads"), help: """
        Worker threads (default: all cores, or under mpirun the cores shared among the ranks on this machine).
        """)
    var requested: Int?

    /// The threads to use: `--threads`, else the cores, shared among this machine's ranks of an `mpirun` job.
    var threads: Int { requested ?? Self.perRank }

    static var perRank: Int {
        let local = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
        return max(1, Parallel.defaultThreads / max(1, local))
    }

    func validate() throws {
        try FlagRule.count(threads, "--threads", in: 1...1024)
    }
}

/// `--model` and `--weights`; without `--weights`, the released weights from the Hub (cached).
struct WeightsOption: ParsableArguments {
    @OptionGroup var network: ModelOption

    @Option(help: """
        Weights: safetensors or a PyTorch checkpoint (.pt, .pth, .bin), in timm's, facenet-pytorch's or \
        pretrainedmodels' key names. Default: the released weights from the Hugging Face Hub (HF_ENDPOINT, \
        HF_HUB_CACHE, HF_HUB_OFFLINE honoured).
        """)
    var weights: String?

    var model: ModelName { network.model }

    /// The network `--model` names, else the one the weights file's metadata names (a checkpoint of `inception
    /// train` or `inception init`), else `fallback` (Inception-v4; the face model for `compare` and `verify`); and
    /// where its weights come from.
    func source(fallback: ModelName = .inceptionV4) throws -> (name: ModelName, source: WeightsSource) {
        guard let weights else { return (network.requested ?? fallback, .released(.withProgressBar())) }
        let url = URL(fileURLWithPath: weights)
        return (try network.model(for: url, fallback: fallback), .file(url))
    }

    /// The model, its convolutions in `precision`'s arithmetic (refused first if this CPU cannot run it).
    func load(_ precision: PrecisionOption, fallback: ModelName = .inceptionV4,
              explainable: ExplainableLayers = .lastBlock) throws -> InceptionModel {
        let route = try precision.route()
        let (name, source) = try source(fallback: fallback)
        return try InceptionModel(try ModelWeights(name, from: source), route: route, explainable: explainable)
    }
}

/// How a benchmark times: medians over timed runs, after untimed warm-up runs.
struct TimingOption: ParsableArguments {
    @Option(help: "Timed runs.")
    var runs = 10

    @Option(help: "Untimed runs first.")
    var warmup = 2

    func validate() throws {
        try FlagRule.count(runs, "--runs", in: 1...1_000_000)
        try FlagRule.count(warmup, "--warmup", in: 0...1_000_000)
    }
}

/// The model `bench` and `bench cold` time: the network, random weights or `--weights`, in `--precision`'s
/// arithmetic, by this CPU's algorithms or `--direct`.
struct TimedModelOption: ParsableArguments {
    @OptionGroup var network: ModelOption

    @Option(help: """
        The weights file to load (default: random weights; with --precision int8, random weights quantised on \
        random images).
        """)
    var weights: String?

    @OptionGroup var precision: PrecisionOption

    @Flag(help: "Use the implicit GEMM for every convolution (no Winograd), for comparison.")
    var direct = false

    var name: ModelName { network.model }

    /// The model to time at `route` (`--precision`'s, or fp32 to compare with): `--weights` or random weights
    /// (quantised on random images for int8 without a quantised checkpoint).
    func load(size: Int, route: PrecisionRoute, threads: Int) throws -> InceptionModel {
        var loaded = try weights.map { try ModelWeights(name, file: URL(fileURLWithPath: $0)) }
            ?? ModelWeights(name, randomSeed: 1)
        if route.precision == .int8 && weights == nil {
            loaded = try Quantization.quantized(loaded, calibration: Benchmark.randomInput(batch: 2, size: size),
                                                threads: threads)
        }
        return try InceptionModel(loaded, algorithms: direct ? .direct : .forThisCPU, route: route)
    }
}

/// The input a benchmark times: a batch of random images at the model's size or `--input-size`.
struct BenchInputOption: ParsableArguments {
    @Option(help: "Batch size.")
    var batch: Int = 1

    @Option(help: "Square input size (default: the model's own).")
    var inputSize: Int?

    func size(of model: ModelName) -> Int { inputSize ?? model.spec.inputSize }

    /// Checked against the network (its smallest input) by the command that knows it.
    func validate(for model: ModelName) throws {
        try FlagRule.batch(batch)
        try FlagRule.inputSize(inputSize, for: model)
    }
}

/// What `bench` and `bench train` share: the input, the runs, the threads, and the report.
struct TimedRunOption: ParsableArguments {
    @OptionGroup var input: BenchInputOption

    @OptionGroup var timing: TimingOption

    @OptionGroup var threads: ThreadsOption

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "With --json, include every timed run's milliseconds as `times_ms`.")
    var allTimes = false
}

/// The images a command runs on, how many per forward pass, and on how many threads.
struct ImageBatches: ParsableArguments {
    @Option(help: "Images per forward pass.")
    var batch: Int = 8

    @OptionGroup var threads: ThreadsOption

    @Argument(help: "JPEG or PNG images.")
    var images: [String]

    /// The images in forward-pass-sized runs, in order.
    var batches: [[String]] { images.chunked(max(1, batch)) }

    func validate() throws { try FlagRule.batch(batch) }

    /// Refuses, before any weights are fetched, a list in which no image is a readable regular file (one that is
    /// missing among others is reported when its turn comes).
    func checkFiles() throws {
        var first: CLIError?
        for path in images {
            do { _ = try FileInput.regularFileSize(URL(fileURLWithPath: path)); return } catch {
                first = first ?? CLIError("cannot read image \(path): \(error)")
            }
        }
        if let first { throw first }
    }

    /// The images of `paths` that decode, each through `net`'s preprocessing as soon as it is decoded (a batch then
    /// holds tensors at the network's input size, never the photos), and for each that does not, its one-line
    /// reason (also written to standard error).
    func prepare(_ paths: [String], for net: InceptionModel)
        -> (images: [(path: String, pixels: [Float])], problems: [(path: String, reason: String)])
    {
        prepare(paths, net.prepare)
    }

    /// `prepare(_:for:)` through any transform of the decoded image (an ensemble's views, say).
    func prepare<Prepared>(_ paths: [String], _ transform: (RGBImage) -> Prepared)
        -> (images: [(path: String, pixels: Prepared)], problems: [(path: String, reason: String)])
    {
        var images: [(path: String, pixels: Prepared)] = [], problems: [(path: String, reason: String)] = []
        for path in paths {
            do {
                images.append((path, transform(try decode(path))))
            } catch {
                problems.append((path, "\(error)"))
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            }
        }
        return (images, problems)
    }
}

extension Array {
    /// Consecutive runs of at most `size` elements.
    func chunked(_ size: Int) -> [[Element]] {
        stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min(count, $0 + size)]) }
    }
}

func decode(_ path: String) throws -> RGBImage { try RGBImage(contentsOf: URL(fileURLWithPath: path)) }

/// The models of a command that scores with one or several, averaging their probabilities (an ensemble, the paper's
/// Table 5): `--model` and `--weights`, each repeatable, paired in order; one `--model` applies to every
/// `--weights`; without `--weights`, each model's released weights from the Hub.
struct MembersOption: ParsableArguments {
    @Option(name: .customLong("model"), help: """
        The network (`inception models` lists them; default: the one each --weights file names, else inception_v4). \
        Repeat with --weights for an ensemble.
        """)
    var models: [ModelName] = []

    @Option(name: .customLong("weights"), help: """
        Weights (safetensors or PyTorch .pt/.pth/.bin). Repeat for an ensemble: its members' probabilities are \
        averaged, each member with its own preprocessing. Default: the released weights from the Hugging Face Hub.
        """)
    var weights: [String] = []

    func validate() throws {
        guard models.count <= 1 || weights.isEmpty || models.count == weights.count else {
            throw CLIError("give one --model for every --weights, or one for all (\(models.count) models, "
                            + "\(weights.count) weights)")
        }
    }

    /// Each member's network and where its weights come from.
    func sources() throws -> [(name: ModelName, source: WeightsSource)] {
        guard !weights.isEmpty else {
            return (models.isEmpty ? [.inceptionV4] : models).map { ($0, .released(.withProgressBar())) }
        }
        return try weights.enumerated().map { i, path in
            let url = URL(fileURLWithPath: path)
            let named = models.count == weights.count ? models[i] : models.first
            return (try named ?? CheckpointMetadata(contentsOf: url).model ?? .inceptionV4, .file(url))
        }
    }

    /// The members, their convolutions in `precision`'s arithmetic (refused first if this CPU cannot run it). A
    /// file given twice (the same device and inode, whatever its spelling) for the same network is loaded once; the
    /// distinct files' memory is checked before the first is read.
    func load(_ precision: PrecisionOption) throws -> Ensemble {
        let route = try precision.route()
        let sources = try sources()
        let ids = sources.map { Self.identity($0.name, $0.source) }
        var sizes: [String: Int] = [:]
        for (id, source) in zip(ids, sources) {
            // A path that is not a readable file is named by the loader below, with its kind.
            if case let .file(url) = source.source { sizes[id] = (try? FileInput.regularFileSize(url)) ?? 0 }
        }
        // The weights as read and as the engine keeps them (BatchNorm folded, kernels packed).
        try MemoryLimit.check(2 * sizes.values.reduce(0, +), for: "the ensemble's \(sizes.count) weights files")
        var loaded: [String: InceptionModel] = [:]
        return try Ensemble(zip(ids, sources).map { id, source in
            if let model = loaded[id] { return model }
            let model = try InceptionModel(try ModelWeights(source.name, from: source.source), route: route)
            loaded[id] = model
            return model
        })
    }

    /// Which member this is: the network and its weights file's device and inode (the Hub's weights by network).
    static func identity(_ name: ModelName, _ source: WeightsSource) -> String {
        guard case let .file(url) = source else { return "hub \(name.rawValue)" }
        var info = stat()
        guard stat(url.path, &info) == 0 else { return "\(url.path) \(name.rawValue)" }
        return "\(info.st_dev):\(info.st_ino) \(name.rawValue)"
    }
}

extension CropProtocol: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: Int(argument) ?? 0) }
    public static var allValueStrings: [String] { allCases.map { String($0.rawValue) } }
}

extension CropAverage: ExpressibleByArgument {}

/// MTCNN's weights and settings, for `faces` and for detection in `embed`, `compare` and `verify`.
struct FaceDetectionOption: ParsableArguments {
    @Option(help: """
        facenet-pytorch's MTCNN weights: the folder of pnet.pt, rnet.pt and onet.pt (default: found in a Python \
        environment with facenet-pytorch, or a Hugging Face cache snapshot that has them).
        """)
    var detectorWeights: String?

    @Option(help: "The smallest face searched for, in pixels (MTCNN's min_face_size).")
    var minFaceSize = 20

    @Option(help: "P-Net's, R-Net's and O-Net's probability thresholds, comma-separated.")
    var thresholds = "0.6,0.7,0.7"

    @Option(help: "Pixels of context around each face, in the 160×160 crop (facenet-pytorch's margin).")
    var margin = 0

    func validate() throws { _ = try settings() }

    func settings() throws -> FaceDetector.Settings {
        let values = thresholds.split(separator: ",", omittingEmptySubsequences: false)
            .map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard values.count == 3, values.allSatisfy({ $0 != nil }) else {
            throw CLIError("--thresholds takes three probabilities, as 0.6,0.7,0.7")
        }
        guard (0..<160).contains(margin) else { throw CLIError("--margin must be from 0 to 159, not \(margin)") }
        do {
            return try FaceDetector.Settings(minimumFaceSize: minFaceSize, thresholds: values.map { $0! })
        } catch let error as FaceDetectorError {
            throw CLIError("--min-face-size or --thresholds: \(error)")
        }
    }

    /// The weights folder given, or found; nil when there is none.
    var weightsFolder: URL? {
        detectorWeights.map { URL(fileURLWithPath: $0) } ?? FaceDetector.weightsDirectory()
    }

    /// The detector, or a one-line remedy when its weights are missing.
    func load() throws -> FaceDetector {
        guard let folder = weightsFolder else {
            throw CLIError("no MTCNN weights found: pass --detector-weights with facenet-pytorch's data folder "
                           + "(pnet.pt, rnet.pt, onet.pt), or `pip install facenet-pytorch`")
        }
        return try FaceDetector(weights: folder, settings: try settings())
    }
}

/// Whether `embed`, `compare` and `verify` find faces in their photos first.
struct FacesInPhotosOption: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: """
        Find each photo's largest face with MTCNN and embed its aligned crop (default for the face model, on photos \
        that are not already 160×160 crops, when MTCNN's weights are found; --no-detect embeds the centre crop).
        """)
    var detect: Bool?

    @OptionGroup var detection: FaceDetectionOption

    /// The detector when photos are to be searched for faces, else nil. By default the face model detects when
    /// MTCNN's weights are found, and says on standard error when they are not.
    func detector(for net: InceptionModel) throws -> FaceDetector? {
        switch detect {
        case false?: return nil
        case true?: return try detection.load()
        case nil:
            guard net.embeddingOutput == .embedding else { return nil }
            guard detection.weightsFolder != nil else {
                FileHandle.standardError.write(Data(("note: no MTCNN weights found, so photos are embedded whole "
                    + "(their centre crop); pass --detector-weights, or --no-detect to silence this\n").utf8))
                return nil
            }
            return try detection.load()
        }
    }

    /// Whether `image` is embedded as it is although a detector runs: by default a photo already at the network's
    /// input size (160 × 160: a crop someone aligned) is; with --detect every photo is searched.
    func takesWhole(_ image: RGBImage, for net: InceptionModel) -> Bool {
        detect == nil && image.width == net.inputSize && image.height == net.inputSize
    }
}

/// The photos a `faces` command searches, its threads, and whether it prints JSON.
struct FacePhotosOption: ParsableArguments {
    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var threads: ThreadsOption

    @Argument(help: "JPEG or PNG photos.")
    var photos: [String]

    func validate() throws { guard !photos.isEmpty else { throw CLIError("give one or more photos") } }
}
