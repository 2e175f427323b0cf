/// A dense Float32 tensor with an explicit shape, row-major (C order). Images and feature maps are NHWC.
///
/// This is the value type at the library's edges (inputs, outputs, parameters). Inside a forward pass the engine
/// works on `FeatureMap` views into one arena instead, so that concatenation is free (each branch writes into a
/// channel slice of its block's output).
public struct Tensor: Sendable, Equatable {
    public var shape: [Int]
    public var scalars: [Float]

    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(shape.reduce(1, *) == scalars.count, "shape \(shape) does not hold \(scalars.count) scalars")
        self.shape = shape
        self.scalars = scalars
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, scalars: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public var count: Int { scalars.count }

    /// NCHW (PyTorch, ONNX) to NHWC.
    package func nchwToNHWC() -> Tensor {
        precondition(shape.count == 4, "nchwToNHWC needs a rank-4 tensor, got \(shape)")
        let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        var out = [Float](repeating: 0, count: scalars.count)
        for b in 0..<n { for ch in 0..<c { for y in 0..<h { for x in 0..<w {
            out[((b * h + y) * w + x) * c + ch] = scalars[((b * c + ch) * h + y) * w + x]
        } } } }
        return Tensor(shape: [n, h, w, c], scalars: out)
    }

    /// NHWC to NCHW.
    package func nhwcToNCHW() -> Tensor {
        precondition(shape.count == 4, "nhwcToNCHW needs a rank-4 tensor, got \(shape)")
        let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        var out = [Float](repeating: 0, count: scalars.count)
        for b in 0..<n { for y in 0..<h { for x in 0..<w { for ch in 0..<c {
            out[((b * c + ch) * h + y) * w + x] = scalars[((b * h + y) * w + x) * c + ch]
        } } } }
        return Tensor(shape: [n, c, h, w], scalars: out)
    }
}

/// A view of NHWC data in memory the engine owns: `n×h×w` pixels of `c` channels, consecutive pixels
/// `pixelStride` floats apart. A channel slice of a wider map has `pixelStride > c`.
package struct FeatureMap: @unchecked Sendable {
    package var base: UnsafeMutablePointer<Float>
    package var n: Int, h: Int, w: Int, c: Int
    package var pixelStride: Int

    package init(base: UnsafeMutablePointer<Float>, n: Int, h: Int, w: Int, c: Int, pixelStride: Int? = nil) {
        self.base = base
        (self.n, self.h, self.w, self.c) = (n, h, w, c)
        self.pixelStride = pixelStride ?? c
    }

    package var pixels: Int { n * h * w }

    @inline(__always) package func pixel(_ b: Int, _ y: Int, _ x: Int) -> UnsafeMutablePointer<Float> {
        base + ((b * h + y) * w + x) * pixelStride
    }

    /// Channels `offset ..< offset + count` of this map.
    package func channels(_ offset: Int, _ count: Int) -> FeatureMap {
        FeatureMap(base: base + offset, n: n, h: h, w: w, c: count, pixelStride: pixelStride)
    }
}

/// 64-byte aligned scratch memory, freed with the owner.
final class AlignedBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int

    init(count: Int, zeroed: Bool = false) {
        self.count = max(count, 16)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: self.count * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: self.count)
        if zeroed { pointer.initialize(repeating: 0, count: self.count) }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}
