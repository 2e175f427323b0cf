import Foundation
import Inception
import InceptionEngine

/// Dynamic batching for one model: up to `maxBatch` waiting requests run as one forward pass. A batch with room
/// waits for requests that were announced (their bodies are being read and decoded), up to `maxDelay` after its
/// oldest request arrived; with none announced it runs at once, so a lone request never waits. Under load,
/// requests queue while a batch runs and the next batch takes them together. The engine's batch rows are
/// independent and computed in the same order whatever the batch size, so every result is bitwise the one an
/// unbatched call gives.
///
/// The forward passes run on a thread of their own (they take the cores for up to seconds, which must not
/// stall the server's event loops or Swift's cooperative pool); requests wait on continuations.
public final class Batcher: @unchecked Sendable {
    /// Why a request was not queued.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        /// More than `maxQueue` requests are waiting; try again after about `retryAfter` seconds.
        case overloaded(waiting: Int, retryAfter: Int)
        case shuttingDown
        /// The client closed its connection before the request's forward pass started; it was dropped.
        case clientGone

        public var description: String {
            switch self {
            case let .overloaded(waiting,
                                 _): return "the server is busy: \(waiting) requests are already waiting for this model"
            case .shuttingDown: return "the server is shutting down"
            case .clientGone: return "the client closed the connection before its request ran"
            }
        }
    }

    public struct Limits: Sendable {
        public var maxBatch: Int
        public var maxDelay: Duration
        /// Requests admitted and not yet in a forward pass — being read, decoded or waiting for a batch — before
        /// new ones are refused.
        public var maxQueue: Int

        public init(maxBatch: Int = 8, maxDelay: Duration = .milliseconds(5), maxQueue: Int = 64) {
            (self.maxBatch, self.maxDelay, self.maxQueue) = (maxBatch, maxDelay, maxQueue)
        }
    }

    /// Called after each forward pass with its size and duration, and whenever the queue length changes.
    public struct Observer: Sendable {
        public var batch: @Sendable (_ size: Int, _ duration: Duration) -> Void = { _, _ in }
        public var queueDepth: @Sendable (_ waiting: Int) -> Void = { _ in }
        public init() {}
    }

    /// What a request asks of its image; requests of the same kind share a batch.
    private enum Kind: Equatable {
        /// A forward pass to the output.
        case forward(OutputName)
        /// A class activation map by the method (a forward pass, then the backward pass to the explained layer), for
        /// classes or for similarities (one batch explains one or the other).
        case explain(CAMMethod, similarity: Bool)
    }

    private enum Answer: Sendable {
        case row([Float])
        case explanation(Explanation)
    }

    private struct Job {
        let pixels: [Float]
        let kind: Kind
        /// An explanation's target.
        let target: ExplanationTarget?
        let arrived: ContinuousClock.Instant
        /// True once the client has gone: the job is dropped instead of run.
        let abandoned: @Sendable () -> Bool
        let continuation: CheckedContinuation<Answer, any Error>
    }

    public let model: InceptionModel
    public let limits: Limits
    let threads: Int
    let observer: Observer

    // Guarded by `condition`.
    private let condition = NSCondition()
    private var waiting: [Job] = []
    private var closed = false
    private var announced = 0
    private var lastBatchDuration: Duration = .zero
    private let finished = DispatchSemaphore(value: 0)

    public init(model: InceptionModel, limits: Limits = Limits(), threads: Int = Parallel.defaultThreads,
                observer: Observer = Observer()) {
        precondition(limits.maxBatch >= 1 && limits.maxQueue >= 1)
        (self.model, self.limits, self.threads, self.observer) = (model, limits, threads, observer)
        // The thread holds the batcher until `close()` ends it.
        let thread = Thread { self.serve() }
        thread.name = "inception-batcher-\(model.name)"
        thread.start()
    }

    /// A request is on its way: call when its handling starts, before its body is read, then
    /// `run(…, announced: true)` or `withdraw()`. Refused when `maxQueue` requests are already admitted (being read,
    /// decoded or waiting), so that an overloaded server says so before it reads another body.
    public func admit() throws(Refusal) {
        condition.lock()
        defer { condition.unlock() }
        if closed { throw .shuttingDown }
        let admitted = announced + waiting.count
        guard admitted < limits.maxQueue else { throw overloaded(admitted) }
        announced += 1
    }

    /// Roughly how long until the queue has drained: the batches ahead, at the last batch's pace. Call locked.
    private func overloaded(_ ahead: Int) -> Refusal {
        let batches = Double(ahead / limits.maxBatch + 1)
        let seconds = batches * (lastBatchDuration / .seconds(1))
        return .overloaded(waiting: ahead, retryAfter: max(1, Int(seconds.rounded(.up))))
    }

    /// An announced request will not come (its image did not decode, say).
    public func withdraw() {
        condition.lock()
        announced -= 1
        condition.signal()
        condition.unlock()
    }

    /// The network's `output` row for one preprocessed image (NHWC pixels of the model's input size). A request
    /// whose `abandoned` turns true before its batch starts is dropped with `Refusal.clientGone`.
    public func run(pixels: [Float], output: OutputName, announced wasAnnounced: Bool = false,
                    abandoned: @escaping @Sendable () -> Bool = { false }) async throws -> [Float] {
        guard case let .row(row) = try await enqueue(pixels, .forward(output), nil, wasAnnounced, abandoned) else {
            preconditionFailure("a forward pass answers a row")
        }
        return row
    }

    /// The class activation map of one preprocessed image for `target` by `method` at the model's last block
    /// (`InceptionModel.explain`), in a batch of explanations by the same method; queued, admitted and dropped as
    /// `run` is.
    public func explain(pixels: [Float], target: ExplanationTarget, method: CAMMethod,
                        announced wasAnnounced: Bool = false,
                        abandoned: @escaping @Sendable () -> Bool = { false }) async throws -> Explanation {
        let kind = Kind.explain(method, similarity: target.isSimilarity)
        guard case let .explanation(explanation) = try await enqueue(pixels, kind, target, wasAnnounced,
                                                                     abandoned) else {
            preconditionFailure("an explanation answers an explanation")
        }
        return explanation
    }

    private func enqueue(_ pixels: [Float], _ kind: Kind, _ target: ExplanationTarget?, _ wasAnnounced: Bool,
                         _ abandoned: @escaping @Sendable () -> Bool) async throws -> Answer {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            defer { condition.unlock() }
            if wasAnnounced {
                announced -= 1
                condition.signal()
            }
            if closed { return continuation.resume(throwing: Refusal.shuttingDown) }
            // Admitted requests were counted by `admit`; others are refused here when the queue is full.
            if !wasAnnounced && waiting.count >= limits.maxQueue {
                return continuation.resume(throwing: overloaded(waiting.count))
            }
            if abandoned() { return continuation.resume(throwing: Refusal.clientGone) }
            waiting.append(Job(pixels: pixels, kind: kind, target: target, arrived: .now, abandoned: abandoned,
                               continuation: continuation))
            observer.queueDepth(waiting.count)
            condition.signal()
        }
    }

    /// Requests waiting for a batch now.
    public var queueDepth: Int {
        condition.lock()
        defer { condition.unlock() }
        return waiting.count
    }

    /// Refuses new requests, finishes the queued ones, and waits for the worker thread to end.
    public func close() {
        condition.lock()
        let wasOpen = !closed
        closed = true
        condition.broadcast()
        condition.unlock()
        if wasOpen { finished.wait() }
    }

    private func serve() {
        defer { finished.signal() }
        while let batch = nextBatch() {
            if batch.isEmpty { continue }  // every request of it was abandoned
            let started = ContinuousClock.now
            let result = Result { try answers(batch) }
            let duration = ContinuousClock.now - started
            condition.lock()
            lastBatchDuration = duration
            condition.unlock()
            observer.batch(batch.count, duration)
            switch result {
            case let .success(answers):
                for (job, answer) in zip(batch, answers) { job.continuation.resume(returning: answer) }
            case let .failure(error):
                for job in batch { job.continuation.resume(throwing: error) }
            }
        }
    }

    /// One batch's answers, in order.
    private func answers(_ batch: [Job]) throws -> [Answer] {
        switch batch[0].kind {
        case let .forward(output):
            let size = model.inputSize
            let input = Tensor(shape: [batch.count, size, size, 3], scalars: batch.flatMap(\.pixels))
            let out = try model.compiled.run(input, output: model.graph.outputs[output], threads: threads)
            let per = out.count / batch.count
            return batch.indices.map { .row(Array(out.scalars[($0 * per)..<(($0 + 1) * per)])) }
        case let .explain(method, _):
            return try model.explain(prepared: batch.map(\.pixels), targets: batch.map { $0.target! }, method: method,
                                     threads: threads).map(Answer.explanation)
        }
    }

    /// Waits for a request, then, while requests are announced, up to `maxDelay` from its arrival for more of the
    /// same output; takes up to `maxBatch` of them in arrival order. Nil once closed and drained.
    private func nextBatch() -> [Job]? {
        condition.lock()
        defer { condition.unlock() }
        while waiting.isEmpty && !closed { condition.wait() }
        guard let first = waiting.first else { return nil }
        let deadline = first.arrived + limits.maxDelay
        while !closed && announced > 0 && waiting.lazy.filter({ $0.kind == first.kind }).count < limits.maxBatch {
            let left = deadline - .now
            guard left > .zero else { break }
            _ = condition.wait(until: Date(timeIntervalSinceNow: left / .seconds(1)))
        }
        var batch: [Job] = [], rest: [Job] = []
        for job in waiting {
            if job.kind == first.kind && batch.count < limits.maxBatch {
                // A request whose client has gone is answered now (nobody reads it) instead of being computed.
                if job.abandoned() { job.continuation.resume(throwing: Refusal.clientGone) } else { batch.append(job) }
            } else {
                rest.append(job)
            }
        }
        waiting = rest
        observer.queueDepth(waiting.count)
        return batch
    }
}
