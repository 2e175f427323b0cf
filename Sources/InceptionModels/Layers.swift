import InceptionEngine

/// The paper's "V" and "S" marks. `same` is symmetric padding of kernel/2 on each side, which equals
/// TensorFlow's SAME for the odd kernels at stride 1 that these networks use it with.
package enum Padding: Sendable {
    case valid
    case same
}

extension Value {
    /// The unit of every box in the paper's figures: convolution without bias → BatchNorm (ε = 0.001) → ReLU.
    /// Parameters `name.conv.weight` and `name.bn.{weight,bias,running_mean,running_var}` (timm's
    /// `ConvNormAct`, facenet-pytorch's `BasicConv2d`).
    package func basicConv(_ name: String, _ outChannels: Int, _ kernel: (Int, Int), stride: Int = 1,
                          _ padding: Padding = .valid) -> Value {
        let pad = padding == .same ? (kernel.0 / 2, kernel.1 / 2) : (0, 0)
        return scope(name) { x in
            x.convolution("conv", outChannels, kernel: kernel, stride: stride, padding: pad, bias: false,
                          batchNorm: "bn",
                          activation: .relu)
        }
    }

    /// A square-kernel `basicConv`.
    package func basicConv(_ name: String, _ outChannels: Int, _ kernel: Int, stride: Int = 1,
                          _ padding: Padding = .valid) -> Value {
        basicConv(name, outChannels, (kernel, kernel), stride: stride, padding)
    }

    /// The 1×1 "Linear" convolution of the Inception-ResNet blocks: with bias, no BatchNorm, no activation.
    package func linearConv(_ name: String, _ outChannels: Int) -> Value {
        convolution(name, outChannels, kernel: (1, 1), bias: true, batchNorm: nil, activation: .identity)
    }
}

