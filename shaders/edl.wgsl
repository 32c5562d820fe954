// Eye-dome lighting (Boucheny 2009, as in Potree): a pixel is darkened by how much nearer its
// neighbours are, in log depth. It shows the shape of point clouds, which have no normals,
// and outlines them against what lies behind.
//
// Bevy's depth is reversed and infinite: d = near / z, so log2(z_a) - log2(z_b) =
// log2(d_b) - log2(d_a), and the near plane drops out.

#import bevy_core_pipeline::fullscreen_vertex_shader::FullscreenVertexOutput

struct Edl {
    strength: f32,
    radius_px: f32,
};

@group(0) @binding(0) var screen: texture_2d<f32>;
@group(0) @binding(1) var<uniform> edl: Edl;
@group(0) @binding(2) var depth: texture_depth_2d;

fn depth_at(p: vec2<i32>, size: vec2<i32>) -> f32 {
    return textureLoad(depth, clamp(p, vec2(0), size - vec2(1)), 0);
}

@fragment
fn fragment(in: FullscreenVertexOutput) -> @location(0) vec4<f32> {
    let size = vec2<i32>(textureDimensions(depth));
    let p = vec2<i32>(in.position.xy);
    let colour = textureLoad(screen, p, 0);
    let d = depth_at(p, size);
    var sum = 0.0;
    for (var i = 0; i < 8; i++) {
        let angle = f32(i) * 0.7853982;
        let offset = vec2<i32>(round(vec2(cos(angle), sin(angle)) * edl.radius_px));
        let n = depth_at(p + offset, size);
        if n <= 0.0 {
            continue; // nothing drawn there: no edge from that side
        }
        if d <= 0.0 {
            sum += 100.0; // background next to geometry: the outline
        } else {
            sum += max(0.0, log2(n) - log2(d));
        }
    }
    let shade = exp(-sum / 8.0 * 300.0 * edl.strength);
    return vec4(colour.rgb * shade, colour.a);
}
