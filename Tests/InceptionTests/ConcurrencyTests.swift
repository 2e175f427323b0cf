import Foundation
import Inception
import InceptionReferences
import InceptionTestSupport
import Testing

/// A loaded model is `Sendable` and immutable: concurrent calls give exactly what serial calls give, and results
/// do not depend on the run or on the thread count (each output value is summed by one task in a fixed order).
@Suite(.serialized) struct ConcurrencyAndDeterminism {
    static func inputs() throws -> [Tensor] {
        let x = try References.tensor(.inceptionResNetV2, "x_139.npy")  // 3 images
        let per = x.count / x.shape[0]
        return (0..<8).map { i in
            let s = i % x.shape[0]
            var one = Tensor(shape: [1] + Array(x.shape.dropFirst()),
                             scalars: Array(x.scalars[(s * per)..<((s + 1) * per)]))
            // Eight distinct inputs.
            if i >= x.shape[0] { one.scalars = one.scalars.map { $0 * (1 - 0.01 * Float(i)) } }
            return one
        }
    }

    @Test(arguments: [ModelName.inceptionResNetV2, .inceptionResNetV1FaceNet])
    func eightConcurrentTasksGiveTheSerialResultsBitwise(_ name: ModelName) async throws {
        let model = try References.model(name)
        let inputs = try Self.inputs()
        let serial = try inputs.map { try model(nchw: $0) }
        let concurrent = try await withThrowingTaskGroup(of: (Int, Tensor).self) { group in
            for (i, x) in inputs.enumerated() { group.addTask { (i, try model(nchw: x)) } }
            var results = [Tensor?](repeating: nil, count: inputs.count)
            for try await (i, y) in group { results[i] = y }
            return results.map { $0! }
        }
        #expect(concurrent == serial)
    }

    @Test func resultsAreBitwiseEqualAcrossRunsAndThreadCounts() throws {
        let model = try References.model(.inceptionV4)
        let x = try References.tensor(.inceptionV4, "x_160.npy")
        let first = try model(nchw: x, threads: 2)
        #expect(try model(nchw: x, threads: 2) == first)
        for threads in [1, 3, 8] { #expect(try model(nchw: x, threads: threads) == first, "\(threads) threads") }
        // Batch rows are independent: each image alone gives its row of the batch, bit for bit.
        let per = x.count / x.shape[0]
        for row in 0..<x.shape[0] {
            let alone = try model(nchw: Tensor(shape: [1] + Array(x.shape.dropFirst()),
                                               scalars: Array(x.scalars[(row * per)..<((row + 1) * per)])))
            #expect(alone.scalars == Array(first.scalars[(row * 1000)..<((row + 1) * 1000)]), "row \(row)")
        }
    }
}
