// Point clouds: each point is a quad of four vertices at the same position, pushed apart in
// clip space so that it covers a screen-space size, then cut to a disc in the fragment stage.
// The size follows the node's point spacing projected on screen (so coarse levels close their
// gaps) with a floor and a ceiling in pixels.

#import bevy_pbr::mesh_functions::{get_world_from_local, mesh_position_local_to_world}
#import bevy_pbr::mesh_view_bindings::view

struct PointSettings {
    // 0 scan colour, 1 intensity, 2 classification, 3 elevation
    colouring: u32,
    min_px: f32,
    max_px: f32,
    // distance between neighbouring points of this level, in the cloud's units
    spacing: f32,
    // world height range for the elevation ramp
    low: f32,
    high: f32,
    // 1 / the largest intensity of the scan
    intensity_scale: f32,
    has_colour: u32,
};

@group(#{MATERIAL_BIND_GROUP}) @binding(0) var<uniform> settings: PointSettings;

struct Vertex {
    @builtin(instance_index) instance_index: u32,
    @location(0) position: vec3<f32>,
    @location(1) colour: vec4<f32>,
    // intensity (bits 0-15), class (16-23), quad corner (24-25)
    @location(2) data: u32,
};

struct VertexOutput {
    @builtin(position) clip_position: vec4<f32>,
    @location(0) colour: vec3<f32>,
    @location(1) corner: vec2<f32>,
};

fn srgb_to_linear(c: vec3<f32>) -> vec3<f32> {
    let low = c / 12.92;
    let high = pow((c + 0.055) / 1.055, vec3(2.4));
    return select(high, low, c <= vec3(0.04045));
}

// ASPRS LAS classes, in the colours viewers commonly use.
fn class_colour(code: u32) -> vec3<f32> {
    switch code {
        case 2u: { return vec3(0.63, 0.45, 0.26); }   // ground
        case 3u: { return vec3(0.55, 0.80, 0.40); }   // low vegetation
        case 4u: { return vec3(0.30, 0.65, 0.25); }   // medium vegetation
        case 5u: { return vec3(0.10, 0.45, 0.10); }   // high vegetation
        case 6u: { return vec3(0.90, 0.35, 0.20); }   // building
        case 7u: { return vec3(1.00, 0.00, 1.00); }   // low point (noise)
        case 9u: { return vec3(0.20, 0.45, 0.95); }   // water
        case 10u: { return vec3(0.85, 0.80, 0.30); }  // rail
        case 11u: { return vec3(0.45, 0.45, 0.45); }  // road surface
        case 17u: { return vec3(0.95, 0.75, 0.45); }  // bridge deck
        case 18u: { return vec3(0.95, 0.10, 0.60); }  // high noise
        default: { return vec3(0.75, 0.75, 0.75); }   // never classified, unclassified, other
    }
}

// Blue, cyan, green, yellow, red.
fn ramp(t: f32) -> vec3<f32> {
    let x = clamp(t, 0.0, 1.0) * 4.0;
    let r = clamp(x - 2.0, 0.0, 1.0);
    let g = clamp(x, 0.0, 1.0) - clamp(x - 3.0, 0.0, 1.0);
    let b = 1.0 - clamp(x - 1.0, 0.0, 1.0);
    return vec3(r, g, b);
}

@vertex
fn vertex(v: Vertex) -> VertexOutput {
    let world_from_local = get_world_from_local(v.instance_index);
    let world = mesh_position_local_to_world(world_from_local, vec4(v.position, 1.0));
    var clip = view.clip_from_world * world;

    let c = (v.data >> 24u) & 3u;
    let corner = vec2(select(-1.0, 1.0, c == 1u || c == 2u), select(-1.0, 1.0, c >= 2u));
    let viewport = view.viewport.zw;
    let scale = length(world_from_local[0].xyz);
    let projected = settings.spacing * scale * view.clip_from_view[1][1] * viewport.y * 0.5 / max(clip.w, 1e-4);
    let size = clamp(projected, settings.min_px, settings.max_px);
    clip = vec4(clip.xy + corner * size / viewport * clip.w, clip.zw);

    var colour: vec3<f32>;
    switch settings.colouring {
        case 1u: {
            let i = clamp(f32(v.data & 0xffffu) * settings.intensity_scale, 0.0, 1.0);
            colour = srgb_to_linear(vec3(i));
        }
        case 2u: {
            colour = srgb_to_linear(class_colour((v.data >> 16u) & 0xffu));
        }
        case 3u: {
            colour = srgb_to_linear(ramp((world.y - settings.low) / max(settings.high - settings.low, 1e-3)));
        }
        default: {
            colour = select(vec3(0.6), srgb_to_linear(v.colour.rgb), settings.has_colour != 0u);
        }
    }

    var out: VertexOutput;
    out.clip_position = clip;
    out.colour = colour;
    out.corner = corner;
    return out;
}

@fragment
fn fragment(in: VertexOutput) -> @location(0) vec4<f32> {
    if dot(in.corner, in.corner) > 1.0 {
        discard;
    }
    return vec4(in.colour, 1.0);
}
