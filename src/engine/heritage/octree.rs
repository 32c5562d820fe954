//! The level-of-detail octree of a point cloud, as Potree builds them: each node keeps an even
//! subsample of the points in its cube (one per cell of a grid) and passes the rest down to
//! its eight children, so drawing the nodes from the root down refines the picture, and the
//! renderer can stop wherever its point budget or the screen-space error says.

use super::scan::Point;

/// Cells per axis of a node's sampling grid: a surface crossing a node fills about this
/// squared of them, which is of the order of the per-node budget.
const GRID: u32 = 128;

/// How an octree is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OctreeConfig {
    /// Most points one node holds.
    pub max_points_per_node: usize,
    /// Deepest level; points still over the budget there are duplicates (or as good as).
    pub max_depth: u8,
}

impl Default for OctreeConfig {
    fn default() -> Self {
        Self { max_points_per_node: 20_000, max_depth: 16 }
    }
}

/// An axis-aligned cube.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cube {
    /// Lowest corner.
    pub min: [f32; 3],
    /// Edge length.
    pub size: f32,
}

impl Cube {
    /// The smallest cube around `points` (a unit cube at the origin for none), a little larger
    /// so that the points on its far faces are inside.
    pub fn around(points: &[Point]) -> Cube {
        let Some(first) = points.first() else { return Cube { min: [0.0; 3], size: 1.0 } };
        let (mut lo, mut hi) = (first.position, first.position);
        for p in points {
            for a in 0..3 {
                lo[a] = lo[a].min(p.position[a]);
                hi[a] = hi[a].max(p.position[a]);
            }
        }
        let size = (0..3).map(|a| hi[a] - lo[a]).fold(0.0f32, f32::max).max(1e-3) * 1.0001;
        Cube { min: lo, size }
    }

    /// Whether a position is inside (lower faces included, upper excluded).
    pub fn contains(&self, p: [f32; 3]) -> bool {
        (0..3).all(|a| p[a] >= self.min[a] && p[a] < self.min[a] + self.size)
    }

    /// The octant `i` (bit 0: x, bit 1: y, bit 2: z).
    pub fn child(&self, i: usize) -> Cube {
        let half = self.size / 2.0;
        let mut min = self.min;
        for (a, m) in min.iter_mut().enumerate() {
            if i >> a & 1 == 1 {
                *m += half;
            }
        }
        Cube { min, size: half }
    }

    fn octant(&self, p: [f32; 3]) -> usize {
        let half = self.size / 2.0;
        (0..3).map(|a| usize::from(p[a] >= self.min[a] + half) << a).sum()
    }

    /// The cube's centre.
    pub fn center(&self) -> [f32; 3] {
        self.min.map(|m| m + self.size / 2.0)
    }
}

/// One node: its cube, its own points, and its children's indices in [`Octree::nodes`].
#[derive(Debug, Clone)]
pub struct Node {
    /// The cube the node covers.
    pub cube: Cube,
    /// Depth (0: the root).
    pub depth: u8,
    /// The node's subsample.
    pub points: Vec<Point>,
    /// Children by octant.
    pub children: [Option<u32>; 8],
}

impl Node {
    /// Distance between neighbouring points at this level: the sampling cell's edge.
    pub fn spacing(&self) -> f32 {
        self.cube.size / GRID as f32
    }
}

/// A built octree.
#[derive(Debug, Clone)]
pub struct Octree {
    /// Nodes, the root first, every parent before its children.
    pub nodes: Vec<Node>,
    /// Points left out because a deepest node was full: exact or near duplicates.
    pub dropped: u64,
}

impl Octree {
    /// Builds the octree of `points`.
    pub fn build(points: Vec<Point>, config: OctreeConfig) -> Octree {
        let root = Cube::around(&points);
        Self::build_in(points, root, 0, config)
    }

    /// Builds the subtree of `points`, all inside `root`, whose root is at `depth`.
    pub fn build_in(points: Vec<Point>, root: Cube, depth: u8, config: OctreeConfig) -> Octree {
        let mut tree = Octree { nodes: Vec::new(), dropped: 0 };
        let mut grid = vec![0u64; (GRID as usize).pow(3).div_ceil(64)];
        // Depth-first with an explicit stack: deep trees do not grow the call stack.
        let mut stack = vec![(None::<(u32, usize)>, root, depth, points)];
        while let Some((parent, cube, depth, points)) = stack.pop() {
            let index = tree.nodes.len() as u32;
            if let Some((parent, octant)) = parent {
                tree.nodes[parent as usize].children[octant] = Some(index);
            }
            let max = config.max_points_per_node.max(1);
            if points.len() <= max {
                tree.nodes.push(Node { cube, depth, points, children: [None; 8] });
                continue;
            }
            let (own, rest) = subsample(&cube, points, max, &mut grid);
            tree.nodes.push(Node { cube, depth, points: own, children: [None; 8] });
            if depth >= config.max_depth {
                tree.dropped += rest.len() as u64;
                continue;
            }
            let mut octants: [Vec<Point>; 8] = Default::default();
            for p in rest {
                octants[cube.octant(p.position)].push(p);
            }
            for (i, points) in octants.into_iter().enumerate().rev() {
                if !points.is_empty() {
                    stack.push((Some((index, i)), cube.child(i), depth + 1, points));
                }
            }
        }
        tree
    }

    /// Points held in all nodes.
    pub fn point_count(&self) -> u64 {
        self.nodes.iter().map(|n| n.points.len() as u64).sum()
    }

    /// The nodes to draw from `eye` with a vertical field of view `fov_y` (radians) on a
    /// screen `height` pixels tall; see [`select`].
    pub fn select(&self, eye: [f32; 3], fov_y: f32, height: f32, max_error_px: f32, point_budget: u64) -> Vec<u32> {
        select(&self.nodes, &LodView { eye, fov_y, height, max_error_px, point_budget }, |_| true)
    }
}

/// A node of the upper levels of an out-of-core build.
struct UpperNode {
    cube: Cube,
    depth: u8,
    points: Vec<Point>,
    children: [Option<u32>; 8],
    grid: Vec<u64>,
    /// At the bucket depth: the file its points wait in, and how many.
    bucket: Option<(std::io::BufWriter<std::fs::File>, u64)>,
}

/// Builds the octree of a scan larger than memory. Points arrive one at a time in the file's
/// order and go down the upper levels as [`Octree::build`] sends them (a node keeps the first
/// point of each empty grid cell until it is full); what reaches `bucket_depth` waits in a
/// file per node there. [`OutOfCore::finish`] then builds each bucket's subtree in memory, one
/// at a time, writing nodes straight to the cache: memory holds the upper levels and one
/// bucket, not the scan.
pub struct OutOfCore {
    config: OctreeConfig,
    bucket_depth: u8,
    nodes: Vec<UpperNode>,
    dir: std::path::PathBuf,
    dropped: u64,
}

impl OutOfCore {
    /// A build of points inside `cube`, with buckets in `dir` (created; removed by `finish`).
    pub fn new(cube: Cube, config: OctreeConfig, bucket_depth: u8, dir: &std::path::Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let root =
            UpperNode { cube, depth: 0, points: Vec::new(), children: [None; 8], grid: Vec::new(), bucket: None };
        Ok(Self {
            config,
            bucket_depth: bucket_depth.min(config.max_depth),
            nodes: vec![root],
            dir: dir.to_owned(),
            dropped: 0,
        })
    }

    /// Sends one point down.
    pub fn insert(&mut self, p: Point) -> std::io::Result<()> {
        let max = self.config.max_points_per_node.max(1);
        let mut index = 0usize;
        loop {
            let node = &mut self.nodes[index];
            if node.depth >= self.bucket_depth {
                if node.bucket.is_none() {
                    let file = std::fs::File::create(self.dir.join(format!("bucket-{index}.bin")))?;
                    node.bucket = Some((std::io::BufWriter::with_capacity(1 << 16, file), 0));
                }
                let (file, count) = node.bucket.as_mut().expect("just made");
                let mut offset = 0;
                super::scan::write_points(file, &[p], &mut offset)?;
                *count += 1;
                return Ok(());
            }
            if node.points.len() < max {
                if node.grid.is_empty() {
                    node.grid = vec![0u64; (GRID as usize).pow(3).div_ceil(64)];
                }
                let scale = GRID as f32 / node.cube.size;
                let cell = |a: usize| (((p.position[a] - node.cube.min[a]) * scale) as u32).min(GRID - 1);
                let cell = ((cell(2) * GRID + cell(1)) * GRID + cell(0)) as usize;
                let (word, bit) = (cell / 64, 1u64 << (cell % 64));
                if node.grid[word] & bit == 0 {
                    node.grid[word] |= bit;
                    node.points.push(p);
                    if node.points.len() == max {
                        // Full for good: its grid is no longer needed.
                        node.grid = Vec::new();
                    }
                    return Ok(());
                }
            }
            if node.depth >= self.config.max_depth {
                self.dropped += 1;
                return Ok(());
            }
            let octant = node.cube.octant(p.position);
            index = match node.children[octant] {
                Some(child) => child as usize,
                None => {
                    let cube = node.cube.child(octant);
                    let depth = node.depth + 1;
                    let child = self.nodes.len();
                    self.nodes[index].children[octant] = Some(child as u32);
                    self.nodes.push(UpperNode {
                        cube,
                        depth,
                        points: Vec::new(),
                        children: [None; 8],
                        grid: Vec::new(),
                        bucket: None,
                    });
                    child
                }
            };
        }
    }

    /// Points held in the upper levels now (the rest wait in buckets).
    pub fn points_in_memory(&self) -> usize {
        self.nodes.iter().map(|n| n.points.len()).sum()
    }

    /// Builds each bucket's subtree and writes every node to `data` (`points.bin`), returning
    /// the stored nodes (parents before children), points written and points dropped.
    pub fn finish(
        mut self,
        data: &mut impl std::io::Write,
    ) -> std::io::Result<(Vec<super::scan::StoredNode>, u64, u64)> {
        use super::scan::{StoredNode, write_points};
        use std::io::Write as _;
        let mut offset = 0u64;
        let mut stored: Vec<StoredNode> = Vec::with_capacity(self.nodes.len());
        let mut buckets = Vec::new();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let first = write_points(data, &node.points, &mut offset)?;
            stored.push(StoredNode {
                min: node.cube.min,
                size: node.cube.size,
                depth: node.depth,
                children: node.children,
                offset: first,
                count: node.points.len() as u32,
            });
            node.points = Vec::new();
            if let Some((mut file, count)) = node.bucket.take() {
                file.flush()?;
                buckets.push((i, count));
            }
        }
        for (i, count) in buckets {
            let path = self.dir.join(format!("bucket-{i}.bin"));
            let points = read_points(&path, count)?;
            std::fs::remove_file(&path)?;
            let upper = &self.nodes[i];
            let sub = Octree::build_in(points, upper.cube, upper.depth, self.config);
            self.dropped += sub.dropped;
            // The bucket's node becomes the subtree's root; the rest follow, renumbered.
            let base = stored.len() as u32 - 1;
            let renumber = |c: [Option<u32>; 8]| c.map(|c| c.map(|c| c + base));
            for (k, node) in sub.nodes.iter().enumerate() {
                let first = write_points(data, &node.points, &mut offset)?;
                let entry = StoredNode {
                    min: node.cube.min,
                    size: node.cube.size,
                    depth: node.depth,
                    children: renumber(node.children),
                    offset: first,
                    count: node.points.len() as u32,
                };
                if k == 0 {
                    stored[i] = entry;
                } else {
                    stored.push(entry);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok((stored, offset, self.dropped))
    }
}

fn read_points(path: &std::path::Path, count: u64) -> std::io::Result<Vec<Point>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    let size = super::scan::POINT_BYTES;
    if bytes.len() as u64 != count * size as u64 {
        return Err(std::io::Error::other(format!("{}: {} bytes for {count} points", path.display(), bytes.len())));
    }
    Ok(super::scan::decode_points(&bytes))
}

/// What choosing nodes needs to know of one, whether it is in memory or in the cache.
pub trait LodNode {
    /// The node's cube.
    fn cube(&self) -> Cube;
    /// Points the node holds.
    fn point_count(&self) -> u64;
    /// Children by octant.
    fn children(&self) -> &[Option<u32>; 8];
}

impl LodNode for Node {
    fn cube(&self) -> Cube {
        self.cube
    }
    fn point_count(&self) -> u64 {
        self.points.len() as u64
    }
    fn children(&self) -> &[Option<u32>; 8] {
        &self.children
    }
}

/// Where a cloud is seen from, in the cloud's own coordinates, and what may be drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LodView {
    /// The eye.
    pub eye: [f32; 3],
    /// Vertical field of view, radians.
    pub fov_y: f32,
    /// Screen height, pixels.
    pub height: f32,
    /// Refine a node while its point spacing covers more pixels than this.
    pub max_error_px: f32,
    /// Most points drawn.
    pub point_budget: u64,
}

/// Distance between neighbouring points of a node in `cube`: its sampling cell's edge.
pub fn spacing(cube: &Cube) -> f32 {
    cube.size / GRID as f32
}

/// The nodes to draw: the root down, most visible first (largest projected point spacing),
/// while a node's spacing covers more than `max_error_px` pixels, stopping before
/// `point_budget` points. Nodes for which `visible` is false (outside the view frustum) are
/// left out with their subtrees. A chosen node's parent is always chosen: no holes.
pub fn select<N: LodNode>(nodes: &[N], view: &LodView, visible: impl Fn(&Cube) -> bool) -> Vec<u32> {
    let Some(root) = nodes.first() else { return Vec::new() };
    let eye = view.eye;
    let pixels_per_unit_at_1m = view.height / (2.0 * (view.fov_y / 2.0).tan());
    let projected = |node: &N| {
        let cube = node.cube();
        let c = cube.center();
        let radius = cube.size * 0.866;
        let distance = ((0..3).map(|a| (c[a] - eye[a]).powi(2)).sum::<f32>().sqrt() - radius).max(0.01);
        spacing(&cube) * pixels_per_unit_at_1m / distance
    };
    let mut chosen = Vec::new();
    if !visible(&root.cube()) {
        return chosen;
    }
    let mut used = 0u64;
    let mut queue = std::collections::BinaryHeap::new();
    queue.push((ordered(projected(root)), 0u32));
    while let Some((error, index)) = queue.pop() {
        let node = &nodes[index as usize];
        if used + node.point_count() > view.point_budget {
            break;
        }
        used += node.point_count();
        chosen.push(index);
        // A child refines its parent only while the parent's points are visibly apart.
        if f32::from_bits(error.0) <= view.max_error_px {
            continue;
        }
        for child in node.children().iter().flatten() {
            let Some(child_node) = nodes.get(*child as usize) else { continue };
            if visible(&child_node.cube()) {
                queue.push((ordered(projected(child_node)), *child));
            }
        }
    }
    chosen
}

/// A positive f32 ordered by its bits (which sort as the numbers do for non-negative values).
fn ordered(v: f32) -> (u32,) {
    (v.max(0.0).to_bits(),)
}

/// Keeps the first point of each grid cell (at most `max`), returns (kept, the rest).
fn subsample(cube: &Cube, points: Vec<Point>, max: usize, grid: &mut [u64]) -> (Vec<Point>, Vec<Point>) {
    let scale = GRID as f32 / cube.size;
    let mut touched = Vec::new();
    let mut own = Vec::with_capacity(max.min(points.len()));
    let mut rest = Vec::with_capacity(points.len().saturating_sub(max));
    for p in points {
        let cell = |a: usize| (((p.position[a] - cube.min[a]) * scale) as u32).min(GRID - 1);
        let index = ((cell(2) * GRID + cell(1)) * GRID + cell(0)) as usize;
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if own.len() < max && grid[word] & bit == 0 {
            grid[word] |= bit;
            touched.push(word);
            own.push(p);
        } else {
            rest.push(p);
        }
    }
    for word in touched {
        grid[word] = 0;
    }
    (own, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic scan: a floor, two walls and a dome, sampled with a fixed seed.
    fn scan(n: usize) -> Vec<Point> {
        let mut rng = crate::model::rng::SeededRng::new(42);
        (0..n)
            .map(|i| {
                let (u, v) = (rng.unit() * 20.0 - 10.0, rng.unit() * 20.0 - 10.0);
                let position = match i % 4 {
                    0 => [u, 0.0, v],
                    1 => [u, (v + 10.0) / 2.0, -10.0],
                    2 => [-10.0, (u + 10.0) / 2.0, v],
                    _ => {
                        let (a, b) = (u * 0.157, (v + 10.0) * 0.0785);
                        [4.0 * b.cos() * a.cos(), 10.0 + 4.0 * b.sin(), 4.0 * b.cos() * a.sin()]
                    }
                };
                Point {
                    position,
                    colour: [(i % 251) as u8, 90, 60],
                    intensity: (i % 65_000) as u16,
                    class: (i % 7) as u8,
                }
            })
            .collect()
    }

    fn key(p: &Point) -> ([u32; 3], [u8; 3], u16, u8) {
        (p.position.map(f32::to_bits), p.colour, p.intensity, p.class)
    }

    #[test]
    fn every_point_lands_in_exactly_one_node_within_its_cube_and_budget() {
        let input = scan(200_000);
        let config = OctreeConfig { max_points_per_node: 5_000, max_depth: 12 };
        let tree = Octree::build(input.clone(), config);
        assert_eq!(tree.dropped, 0);
        let mut stored: Vec<_> = tree.nodes.iter().flat_map(|n| n.points.iter().map(key)).collect();
        let mut expected: Vec<_> = input.iter().map(key).collect();
        stored.sort_unstable();
        expected.sort_unstable();
        assert_eq!(stored, expected, "the nodes hold the input exactly: none lost, none twice");
        for (i, node) in tree.nodes.iter().enumerate() {
            assert!(node.points.len() <= config.max_points_per_node, "node {i} holds {}", node.points.len());
            assert!(
                node.points.iter().all(|p| node.cube.contains(p.position)),
                "node {i} holds a point outside its cube"
            );
            for (octant, child) in node.children.iter().enumerate() {
                if let Some(child) = child {
                    assert!(*child as usize > i, "parents come before their children");
                    let child = &tree.nodes[*child as usize];
                    assert_eq!((child.cube, child.depth), (node.cube.child(octant), node.depth + 1));
                }
            }
        }
        assert!(tree.nodes.len() > 40, "a real hierarchy: {} nodes", tree.nodes.len());
        // The root is an even sample of the whole, not the first points of the file.
        let root = &tree.nodes[0];
        let kinds = (0..4)
            .map(|k| root.points.iter().filter(|p| usize::from(p.colour[0]) % 4 == k).count())
            .collect::<Vec<_>>();
        assert!(kinds.iter().all(|k| *k > 200), "{kinds:?}");
        // The same input builds the same tree.
        let again = Octree::build(input, config);
        assert_eq!(again.nodes.len(), tree.nodes.len());
        assert!(again.nodes.iter().zip(&tree.nodes).all(|(a, b)| a.points == b.points));
    }

    #[test]
    fn an_out_of_core_build_holds_every_point_once_in_a_valid_tree_without_holding_the_scan() {
        let input = scan(200_000);
        let config = OctreeConfig { max_points_per_node: 5_000, max_depth: 12 };
        let dir = std::env::temp_dir().join(format!("parvis-ooc-{}", std::process::id()));
        let mut builder = OutOfCore::new(Cube::around(&input), config, 2, &dir).unwrap();
        let mut most_held = 0;
        for p in &input {
            builder.insert(*p).unwrap();
            most_held = most_held.max(builder.points_in_memory());
        }
        // Only the root and its eight children hold points while reading: 9 nodes at most.
        assert!(most_held <= 9 * 5_000, "{most_held} points held while reading");
        let mut data = Vec::new();
        let (nodes, written, dropped) = builder.finish(&mut data).unwrap();
        assert_eq!((written, dropped), (200_000, 0));
        assert!(!dir.exists(), "bucket files are removed");
        let size = super::super::scan::POINT_BYTES;
        let read = |n: &super::super::scan::StoredNode| {
            super::super::scan::decode_points(
                &data[n.offset as usize * size..(n.offset as usize + n.count as usize) * size],
            )
        };
        let mut stored: Vec<_> = nodes.iter().flat_map(|n| read(n).iter().map(key).collect::<Vec<_>>()).collect();
        let mut expected: Vec<_> = input.iter().map(key).collect();
        stored.sort_unstable();
        expected.sort_unstable();
        assert_eq!(stored, expected, "every point exactly once");
        let mut parents = vec![0; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            let cube = Cube { min: n.min, size: n.size };
            assert!(n.count as usize <= 5_000 && n.count > 0, "node {i} holds {}", n.count);
            assert!(read(n).iter().all(|p| cube.contains(p.position)), "node {i} holds a point outside its cube");
            for (octant, child) in n.children.iter().enumerate() {
                if let Some(c) = child {
                    assert!(*c as usize > i, "parents come before children");
                    parents[*c as usize] += 1;
                    assert_eq!(
                        (Cube { min: nodes[*c as usize].min, size: nodes[*c as usize].size }, nodes[*c as usize].depth),
                        (cube.child(octant), n.depth + 1)
                    );
                }
            }
        }
        assert!(parents[0] == 0 && parents[1..].iter().all(|p| *p == 1), "a tree");
        assert!(nodes.len() > 40);
        // As deep as the in-memory build: the buckets' subtrees continue below depth 2.
        let in_memory = Octree::build(input, config);
        let deepest = |d: &mut dyn Iterator<Item = u8>| d.max().unwrap();
        assert_eq!(deepest(&mut nodes.iter().map(|n| n.depth)), deepest(&mut in_memory.nodes.iter().map(|n| n.depth)));
    }

    #[test]
    fn duplicates_are_dropped_at_the_deepest_level_and_counted() {
        let same = Point { position: [1.0, 2.0, 3.0], colour: [1, 2, 3], intensity: 0, class: 0 };
        let mut input = vec![same; 50_000];
        input.extend(scan(1_000));
        let config = OctreeConfig { max_points_per_node: 1_000, max_depth: 6 };
        let tree = Octree::build(input, config);
        assert_eq!(tree.point_count() + tree.dropped, 51_000);
        assert!(tree.dropped > 40_000, "{}", tree.dropped);
        assert!(tree.nodes.iter().all(|n| n.points.len() <= 1_000 && n.depth <= 6));
        // Nothing at all, and one point, are trees too.
        assert_eq!(Octree::build(Vec::new(), config).point_count(), 0);
        assert_eq!(Octree::build(vec![same], config).nodes.len(), 1);
    }

    #[test]
    fn selection_respects_the_budget_and_refines_near_the_eye() {
        let tree = Octree::build(scan(300_000), OctreeConfig { max_points_per_node: 4_000, max_depth: 12 });
        for budget in [1_000u64, 20_000, 100_000] {
            let chosen = tree.select([0.0, 1.7, 8.0], 1.0, 1080.0, 1.0, budget);
            let used: u64 = chosen.iter().map(|i| tree.nodes[*i as usize].points.len() as u64).sum();
            assert!(used <= budget, "{used} points for a budget of {budget}");
            // A chosen node's parent is chosen too: the picture refines, it never has holes.
            for i in &chosen {
                if *i != 0 {
                    let parent = tree.nodes.iter().position(|n| n.children.contains(&Some(*i))).unwrap() as u32;
                    assert!(chosen.contains(&parent));
                }
            }
        }
        let near = tree.select([0.0, 1.7, 0.0], 1.0, 1080.0, 1.0, 60_000);
        let far = tree.select([0.0, 1.7, 2_000.0], 1.0, 1080.0, 1.0, 60_000);
        let deepest = |chosen: &[u32]| chosen.iter().map(|i| tree.nodes[*i as usize].depth).max().unwrap();
        assert!(deepest(&near) > deepest(&far), "near {} vs far {}", deepest(&near), deepest(&far));
        assert!(far.len() < near.len(), "far away, coarse levels are enough: {} vs {}", far.len(), near.len());
    }
}
