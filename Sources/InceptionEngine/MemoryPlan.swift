/// The memory planner of `CompiledGraph`: per input shape and requested output, once, where every node's values
/// live. Concatenation inputs that nothing else reads are written straight into their channel slice of the
/// concatenation; the remaining buffers share one arena, assigned greedily by liveness (best fit in order of first
/// use); the scratch space of the layer that needs the most (Winograd's transformed tiles) follows them.
extension CompiledGraph {
    struct PlanKey: Hashable { let n: Int, h: Int, w: Int, output: Int }
    struct View: Sendable { let offset: Int, pixelStride: Int }

    final class Plan: Sendable {
        let shapes: [Shape]
        let views: [View?]
        /// For concatenation inputs written in place: the concatenation and the channel offset.
        let parent: [(node: Int, offset: Int)?]
        /// Activations, then the scratch space of the layer that needs the most (Winograd's transformed tiles).
        let arenaSize: Int
        let scratchOffset: Int
        private let arenas = Locked<[AlignedBuffer]>([])

        init(shapes: [Shape], views: [View?], parent: [(node: Int, offset: Int)?], arenaSize: Int, scratchOffset: Int) {
            (self.shapes, self.views, self.parent, self.arenaSize, self.scratchOffset) =
                (shapes, views, parent, arenaSize, scratchOffset)
        }

        /// A free arena of this plan, else a new one once `MemoryLimit` says it fits (`what` names the call in the
        /// error); only an allocation pays for the check.
        func borrowArena(_ what: @autoclosure () -> String) throws(MemoryError) -> AlignedBuffer {
            if let arena = arenas.withLock({ $0.popLast() }) { return arena }
            try MemoryLimit.check(arenaSize * 4, for: what())
            return AlignedBuffer(count: arenaSize)
        }

        func returnArena(_ arena: AlignedBuffer) { arenas.withLock { $0.append(arena) } }
    }

    /// Activation memory of one call at this input size, in floats.
    package func arenaFloats(n: Int, h: Int, w: Int) throws -> Int {
        try plan(n: n, h: h, w: w, output: graph.output).arenaSize
    }

    func plan(n: Int, h: Int, w: Int, output: Int) throws -> Plan {
        let key = PlanKey(n: n, h: h, w: w, output: output)
        if let plan = plans.withLock({ $0[key] }) { return plan }
        let plan = try makePlan(n: n, h: h, w: w, output: output)
        plans.withLock {
            if $0.count >= keptPlans { $0.remove(at: $0.startIndex) }
            $0[key] = plan
        }
        return plan
    }

    /// What a plan is made from: the shapes, which nodes run, and who reads whom.
    private struct Liveness {
        let shapes: [Shape]
        /// Nodes `0 ..< count` take part: up to the output, and siblings a merged GEMM at or before it writes.
        let count: Int
        let live: [Bool]
        /// Where node i's values are written (a merged sibling's, at its producer).
        let written: [Int]
        let consumers: [[Int]]
        /// The output, past any alias.
        let output: Int
    }

    private func liveness(n: Int, h: Int, w: Int, output: Int) throws -> Liveness {
        let shapes = try graph.shapes(n: n, h: h, w: w)
        var count = output + 1
        for i in 0...output {
            if case let .siblings(_, _, outputs) = steps[i] { count = max(count, outputs.max()! + 1) }
        }
        let live = (0..<count).map { i -> Bool in
            switch steps[i] {
            case .alias, .dead: return false
            case let .sibling(producer): return producer <= output
            default: return i <= output
            }
        }
        let written = (0..<count).map { i in if case let .sibling(producer) = steps[i] { producer } else { i } }
        var consumers = [[Int]](repeating: [], count: count)
        for i in 0..<count where live[i] { for j in steps[i].inputs { consumers[j].append(i) } }
        var resolved = output
        while case let .alias(k) = steps[resolved] { resolved = k }
        return Liveness(shapes: shapes, count: count, live: live, written: written, consumers: consumers,
                        output: resolved)
    }

    private func makePlan(n: Int, h: Int, w: Int, output: Int) throws -> Plan {
        let l = try liveness(n: n, h: h, w: w, output: output)
        // Concatenation inputs that only the concatenation reads are written into its slices.
        var parent = [(node: Int, offset: Int)?](repeating: nil, count: l.count)
        for i in (0..<l.count).reversed() {
            guard case let .shared(.concat, inputs) = steps[i] else { continue }
            var offset = 0
            for j in inputs {
                if l.consumers[j] == [i], parent[j] == nil, j != 0, j != l.output { parent[j] = (i, offset) }
                offset += l.shapes[j].c
            }
        }
        func root(_ i: Int) -> (node: Int, offset: Int) {
            guard let p = parent[i] else { return (i, 0) }
            let r = root(p.node)
            return (r.node, r.offset + p.offset)
        }
        // Lifetime of each root buffer: from the first node written into it to the last node reading it.
        var first = [Int: Int](), last = [Int: Int]()
        for i in 0..<l.count where l.live[i] {
            let r = root(i).node
            first[r] = min(first[r] ?? l.written[i], l.written[i])
            let end = i == l.output ? Int.max : (l.consumers[i].max() ?? l.written[i])
            last[r] = max(last[r] ?? end, end)
        }
        let (offsets, arenaSize) = Self.assignOffsets(first: first, last: last, shapes: l.shapes)
        var views = [View?](repeating: nil, count: l.count)
        for i in 0..<l.count {
            var j = i
            while case let .alias(k) = steps[j] { j = k }
            guard l.live[j] else { continue }
            let r = root(j)
            views[i] = View(offset: offsets[r.node]! + r.offset, pixelStride: l.shapes[r.node].c)
        }
        var scratch = 0
        for i in 0..<l.count {
            switch steps[i] {
            case let .convolution(conv, input, _), let .siblings(conv, input, _):
                let x = l.shapes[input]
                scratch = max(scratch, conv.scratchFloats(n: x.n, h: x.h, w: x.w))
            default: break
            }
        }
        return Plan(shapes: l.shapes, views: views, parent: parent, arenaSize: arenaSize + scratch,
                    scratchOffset: arenaSize)
    }

    /// Greedy best-fit assignment of arena blocks in order of first use; a block is free once the last node reading
    /// its buffer is past. Returns each root buffer's offset and the arena's size, in floats.
    private static func assignOffsets(first: [Int: Int], last: [Int: Int], shapes: [Shape])
        -> (offsets: [Int: Int], size: Int) {
        var offsets = [Int: Int](), free: [(offset: Int, size: Int)] = [], active: [Int] = [], arenaSize = 0
        for r in first.keys.sorted(by: { first[$0]! < first[$1]! }) {
            let start = first[r]!
            active.removeAll { a in
                if last[a]! < start { free.append((offsets[a]!, (shapes[a].count + 15) / 16 * 16)); return true }
                return false
            }
            let size = (shapes[r].count + 15) / 16 * 16
            if let k = free.indices.filter({ free[$0].size >= size }).min(by: { free[$0].size < free[$1].size }) {
                offsets[r] = free[k].offset
                if free[k].size > size {
                    free[k] = (free[k].offset + size, free[k].size - size)
                } else {
                    free.remove(at: k)
                }
            } else {
                offsets[r] = arenaSize
                arenaSize += size
            }
            active.append(r)
        }
        return (offsets, arenaSize)
    }
}
