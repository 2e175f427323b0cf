import ArgumentParser
import InceptionTraining
import Foundation
import Inception
import InceptionIO

extension OptimizerSettings.Kind: ExpressibleByArgument {}
extension LearningRateSchedule.Kind: ExpressibleByArgument {}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train or fine-tune on an image folder (one sub-folder per class); checkpoints timm loads.",
        discussion: """
        Defaults are the paper's recipe (§4): RMSProp (decay 0.9, momentum 0.9, ε 1.0), learning rate 0.045 × 0.94 \
        every two epochs, weight decay 4e-5 on weights, label smoothing 0.1. The run folder holds model.safetensors \
        (timm's key names), optimizer state, metrics.jsonl and curves.svg; --resume continues a killed run.

        Data parallel over MPI: `mpirun -np N inception train …` (Open MPI, loaded at run time). Every rank starts \
        from rank 0's weights and takes its share of each epoch; gradients are averaged while the backward pass \
        runs; only rank 0 writes the run folder and reports. A run resumes with any number of ranks. See \
        docs/distributed.md.
        """)

    @OptionGroup var model: ModelOption

    @Option(help: "Training images: one sub-folder per class.")
    var data: String

    @Option(help: "Validation images, with the same class folders.")
    var val: String?

    @Option(help: """
        Start from these weights (safetensors or PyTorch .pt/.pth/.bin, released key names); a different class \
        count replaces the classifier.
        """)
    var weights: String?

    @Option(help: "The run folder.")
    var output: String

    @Flag(help: "Continue the run in --output from its last completed epoch.")
    var resume = false

    @Flag(help: "Start a new run in an --output folder that holds one (its files are replaced).")
    var overwrite = false

    @Flag(help: "Print each epoch's metrics as a JSON line, and the run's summary as JSON at the end.")
    var json = false

    @Option var epochs: Int = 10
    @Option(help: "Images per step; under mpirun, per rank (the global batch is ranks × this).")
    var batchSize: Int = 32
    @Option(help: "Square input size (default: the model's own).")
    var inputSize: Int?

    @Option(help: "rmsprop (TensorFlow's, the paper's) or sgd.")
    var optimizer: OptimizerSettings.Kind = .rmsprop
    @Option(help: "Learning rate, for the global batch under mpirun (the gradients are averaged over the ranks).")
    var lr: Float = 0.045
    @Option var momentum: Float = 0.9
    @Flag(help: "Nesterov momentum (sgd).")
    var nesterov = false
    @Option var weightDecay: Float = 4e-5
    @Option(help: "exponential (× --lr-factor every --lr-every epochs), cosine or constant.")
    var schedule: LearningRateSchedule.Kind = .exponential
    @Option var lrFactor: Float = 0.94
    @Option var lrEvery: Float = 2
    @Option var warmupEpochs: Float = 0
    @Option var labelSmoothing: Float = 0.1
    @Option(help: "Clip gradients to this global L2 norm.")
    var clipNorm: Float?
    @Option(help: "Validate a moving average of the weights with this decay (e.g. 0.999).")
    var averageDecay: Float?
    @Option(help: "BatchNorm momentum (PyTorch 0.1; TF-slim's decay 0.9997 is 0.0003).")
    var batchNormMomentum: Float = 0.1
    @Option(help: "Dropout before the classifier (default: the network's).")
    var dropout: Float?
    @Option(help: "Smallest area of the random training crop, as a fraction of the image (Inception's 0.08).")
    var cropArea: Double = 0.08
    @Flag(help: "Do not flip training images left–right (for data where a mirror image is another class, like digits).")
    var noFlip = false
    @Option var seed: UInt64 = 0
    @Option(help: ArgumentHelp("""
        Reduced depth for experiments: blocks in the A, B and C stages, e.g. 1,2,1 (checkpoints then load only into \
        this library).
        """, valueName: "a,b,c"))
    var repeats: String?
    @Flag(help: """
        Train TF-slim's auxiliary classifier on the 17×17 map too (inception_v4, inception_resnet_v2; input 299–346). \
        Its weights go to auxiliary.safetensors, not the checkpoint timm loads.
        """)
    var auxHead = false
    @Option(help: "Weight of the auxiliary classifier's loss (TF-slim's 0.4).")
    var auxWeight: Float = 0.4
    @Flag(help: "Skip batches whose loss is NaN or infinite instead of stopping.")
    var skipNonfinite = false
    @Flag(help: "Leave training images that cannot be decoded out of their batch (reported) instead of stopping.")
    var skipUnreadable = false
    @Flag(help: """
        Under mpirun: BatchNorm normalises with the statistics of every rank's batch together (the global batch) \
        instead of each rank's own (the default, as PyTorch's DDP and Horovod).
        """)
    var syncBatchnorm = false

    @OptionGroup var threads: ThreadsOption

    func validate() throws {
        try FlagRule.count(epochs, "--epochs", in: 1...100_000)
        try FlagRule.batch(batchSize, "--batch-size", least: 2)  // BatchNorm needs two images
        try FlagRule.inputSize(inputSize, for: model.model)
        try validateNumbers()
        guard repeats == nil || blockRepeats != nil else {
            throw CLIError("--repeats takes three block counts ≥ 1, e.g. 1,2,1")
        }
        guard repeats == nil || weights == nil else {
            throw CLIError("--repeats trains from scratch; it cannot start from --weights")
        }
        guard !(resume && overwrite) else { throw CLIError("--resume and --overwrite exclude each other") }
        var folder: ObjCBool = false
        if FileManager.default.fileExists(atPath: output, isDirectory: &folder), !folder.boolValue {
            throw CLIError("--output \(output) is a file; a run is written to a folder")
        }
    }

    /// Every number of the recipe in the range where it means something (a decay of 2 would make an average that
    /// grows without bound; a NaN rate, weights of NaN).
    private func validateNumbers() throws {
        let unbounded = Float.greatestFiniteMagnitude
        try FlagRule.number(lr, "--lr", 0...unbounded, open: (true, false))
        try FlagRule.number(momentum, "--momentum", 0...1, open: (false, true))
        try FlagRule.number(weightDecay, "--weight-decay", 0...unbounded)
        try FlagRule.number(lrFactor, "--lr-factor", 0...1, open: (true, false))
        try FlagRule.number(lrEvery, "--lr-every", 0...unbounded, open: (true, false))
        try FlagRule.number(warmupEpochs, "--warmup-epochs", 0...unbounded)
        try FlagRule.number(labelSmoothing, "--label-smoothing", 0...1, open: (false, true))
        try FlagRule.number(clipNorm, "--clip-norm", 0...unbounded, open: (true, false))
        try FlagRule.number(averageDecay, "--average-decay", 0...1, open: (true, true))
        try FlagRule.number(batchNormMomentum, "--batch-norm-momentum", 0...1, open: (true, false))
        try FlagRule.number(dropout, "--dropout", 0...1, open: (false, true))
        try FlagRule.number(Float(cropArea), "--crop-area", 0...1, open: (true, false))
        try FlagRule.number(auxWeight, "--aux-weight", 0...unbounded, open: (true, false))
    }

    var blockRepeats: [Int]? {
        let counts = repeats?.split(separator: ",").compactMap { Int($0) }
        return counts?.count == 3 && counts!.allSatisfy({ $0 >= 1 }) ? counts : nil
    }

    func run() throws {
        try reportingErrors {
            let name = model.model
            let communicator = try Communicator.fromEnvironment()
            let listed = try ImageFolder(data, classes: nil)
            let classes = listed.classNames!
            let (train, validation) = try checkImages(listed, try val.map { try ImageFolder($0, classes: classes) },
                                                      speaks: communicator?.isRoot ?? true)
            var config = TrainingConfiguration(
                model: name, classes: classes, inputSize: inputSize ?? name.spec.inputSize, epochs: epochs,
                batchSize: batchSize,
                optimizer: OptimizerSettings(kind: optimizer, momentum: momentum, nesterov: nesterov,
                                             weightDecay: weightDecay),
                schedule: LearningRateSchedule(kind: schedule, base: lr, factor: lrFactor, every: lrEvery,
                                               warmupEpochs: warmupEpochs, epochs: Float(epochs)),
                seed: seed)
            (config.labelSmoothing, config.clipNorm, config.averageDecay) = (labelSmoothing, clipNorm, averageDecay)
            (config.batchNormMomentum, config.dropout, config.skipNonFinite) = (batchNormMomentum, dropout,
                skipNonfinite)
            (config.skipUnreadable, config.repeats) = (skipUnreadable, blockRepeats)
            config.auxiliaryWeight = auxHead ? auxWeight : nil
            (config.augmentation.scale, config.augmentation.flip) = (cropArea...1, !noFlip)
            let graph = name.graph(classes: classes.count)
            let initial = try weights.map {
                try name.trainingValues(for: graph, weights: URL(fileURLWithPath: $0), seed: seed)
            }
            let run = URL(fileURLWithPath: output)
            if let communicator { DistributedStop.install(rank: communicator.rank) }
            let fresh = !FileManager.default.fileExists(atPath: output)
            var made: Trainer?
            do {
                made = try Trainer(config, train: train, validation: validation, run: run, initial: initial,
                                   resume: resume, overwrite: overwrite, communicator: communicator)
                made!.threads = threads.threads
                made!.syncBatchNorm = syncBatchnorm
                try self.train(made!, epochs: config.epochs)
            } catch {
                // A start that fails leaves nothing behind: a folder this run made, before any epoch was saved.
                if fresh && (made?.completedEpochs ?? 0) == 0 && (communicator?.isRoot ?? true) {
                    try? FileManager.default.removeItem(at: run)
                }
                // A divergence or a non-finite loss is every rank's decision: rank 0 reports it.
                if error is TrainingError && !(communicator?.isRoot ?? true) { throw ExitCode(1) }
                if error is ImageError { throw CLIError("\(error) (--skip-unreadable leaves such images out)") }
                throw error
            }
            let trainer = made!
            communicator?.finish()
            guard communicator?.isRoot ?? true else { return }
            let checkpoint = run.appendingPathComponent("model.safetensors").path
            if json {
                try printJSON(["checkpoint": checkpoint, "epochs": trainer.history.map(\.epoch).max() ?? 0,
                               "classes": classes, "input_size": config.inputSize,
                               "train_loss": trainer.history.last?.trainLoss ?? NSNull(),
                               "validation_accuracy": trainer.history.last?.validationAccuracy ?? NSNull()])
            } else {
                print("checkpoint: \(checkpoint)")
            }
        }
    }
}

extension Train {
    /// The training and validation sets with every file's header and end checked before epoch 1: a bad file is one
    /// line naming it and --skip-unreadable; with it, each is reported (by rank 0) and left out.
    func checkImages(_ train: ImageFolder, _ validation: ImageFolder?, speaks: Bool) throws
        -> (ImageFolder, ImageFolder?)
    {
        var seen = Set<String>()
        let bad = (train.unreadableImages() + (validation?.unreadableImages() ?? [])).filter {
            seen.insert($0.path).inserted
        }
        guard !bad.isEmpty else { return (train, validation) }
        guard skipUnreadable else {
            let more = bad.count > 1 ? "; \(bad.count - 1) more cannot be read either" : ""
            throw CLIError("\(bad[0].reason)\(more) (--skip-unreadable leaves such images out)")
        }
        if speaks { for (_, reason) in bad { FileHandle.standardError.write(Data("skipped \(reason)\n".utf8)) } }
        let paths = Set(bad.map(\.path))
        return (train.removing(paths), validation?.removing(paths))
    }

    /// Runs the epochs with a progress bar (images/s, loss, accuracy, time left) on a terminal — or, to a log file or
    /// a pipe, a plain line every 50 steps or 30 s — warnings and skipped images on standard error, and one line (or
    /// JSON line) per epoch.
    func train(_ trainer: Trainer, epochs: Int) throws {
        // Under mpirun only rank 0 reports.
        let speaks = trainer.communicator?.isRoot ?? true
        let bar = ProgressBar(visible: speaks && isatty(2) == 1)
        let log = speaks && isatty(2) != 1 ? ProgressLog() : nil
        let started = Date()
        try trainer.train(progress: { p in
            let left = Double(p.steps - p.step) * Double(batchSize) / max(p.imagesPerSecond, 1e-9)
            bar.show("epoch \(p.epoch)/\(epochs)", p.step, of: p.steps,
                     detail: String(format: "%d/%d loss %.4f acc %.3f %.1f img/s, %@ left", p.step, p.steps, p.loss,
                                    p.accuracy, p.imagesPerSecond, ProgressBar.duration(left)))
            log?.step(p, secondsLeft: left)
        }, unreadableImage: { _, reason in
            bar.finish()
            FileHandle.standardError.write(Data("skipped \(reason)\n".utf8))
        }, warning: { message in
            guard speaks else { return }
            bar.finish()
            FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
        }, epochDone: { m in
            guard speaks else { return }
            if json {
                print((try? m.jsonLine()) ?? "{}")
                return
            }
            let auxiliary = m.trainAuxiliaryLoss.map { String(format: " (auxiliary %.4f)", $0) } ?? ""
            let validation = m.validationAccuracy.map { String(format: ", validation accuracy %.3f", $0) } ?? ""
            print(String(format: "epoch %d: loss %.4f%@, train accuracy %.3f%@, %.1f images/s, %@ so far", m.epoch,
                         m.trainLoss, auxiliary, m.trainAccuracy, validation, m.imagesPerSecond,
                         ProgressBar.duration(Date().timeIntervalSince(started))))
        })
    }
}

/// Training progress where no terminal shows a bar (a log file, nohup, a batch job): a plain line on standard error
/// every `everySteps` steps or `everySeconds`, whichever comes first, and at an epoch's last step — as timm logs.
final class ProgressLog {
    let everySteps: Int, everySeconds: Double
    private var lastStep = 0, lastTime = Date()

    init(everySteps: Int = 50, everySeconds: Double = 30) {
        (self.everySteps, self.everySeconds) = (everySteps, everySeconds)
    }

    func step(_ p: TrainingProgress, secondsLeft: Double) {
        if p.step < lastStep { lastStep = 0 }  // a new epoch
        let due = p.step - lastStep >= everySteps || Date().timeIntervalSince(lastTime) >= everySeconds
            || p.step == p.steps
        guard due else { return }
        (lastStep, lastTime) = (p.step, Date())
        let line = String(format: "epoch %d/%d step %d/%d (%.0f%%) loss %.4f acc %.3f lr %.4g %.1f img/s, %@ left in "
                          + "the epoch\n", p.epoch, p.epochs, p.step, p.steps, 100 * Double(p.step) / Double(p.steps),
                          p.loss, p.accuracy, Double(p.learningRate), p.imagesPerSecond,
                          ProgressBar.duration(secondsLeft))
        FileHandle.standardError.write(Data(line.utf8))
    }
}

/// Under mpirun, a rank that another's failure ended (mpirun stops the others with SIGTERM) says so in one line.
enum DistributedStop {
    nonisolated(unsafe) static var message: [CChar] = []

    static func install(rank: Int) {
        let line = "error: rank \(rank): stopped by mpirun because another rank ended (mpirun's report names it)\n"
        message = Array(line.utf8CString)
        signal(SIGTERM) { _ in
            DistributedStop.message.withUnsafeBufferPointer { _ = write(2, $0.baseAddress, $0.count - 1) }
            _exit(1)
        }
    }
}
