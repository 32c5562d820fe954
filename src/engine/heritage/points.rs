//! Drawing point clouds: one mesh per octree node, whose points are quads that our own shader
//! (`shaders/points.wgsl`) sizes in screen space and colours by the cloud's colouring mode.

use bevy::asset::{RenderAssetUsages, load_internal_asset, uuid_handle};
use bevy::mesh::{
    Indices, MeshVertexAttribute, MeshVertexBufferLayoutRef, PrimitiveTopology, VertexAttributeValues, VertexFormat,
};
use bevy::pbr::{MaterialPipeline, MaterialPipelineKey};
use bevy::prelude::*;
use bevy::render::render_resource::{AsBindGroup, RenderPipelineDescriptor, ShaderType, SpecializedMeshPipelineError};
use bevy::shader::{Shader, ShaderRef};

use super::scan::Point;
use crate::model::scene::format::CloudColouring;

const POINTS_SHADER: Handle<Shader> = uuid_handle!("5b0f8a52-63c1-4d6e-9a55-0b1de1f0a7c1");

/// Per-vertex colour (sRGB bytes).
pub const ATTRIBUTE_POINT_COLOUR: MeshVertexAttribute =
    MeshVertexAttribute::new("PointColour", 0x5041_5256_0000_0001, VertexFormat::Unorm8x4);
/// Per-vertex intensity (bits 0–15), class (16–23) and quad corner (24–25).
pub const ATTRIBUTE_POINT_DATA: MeshVertexAttribute =
    MeshVertexAttribute::new("PointData", 0x5041_5256_0000_0002, VertexFormat::Uint32);

/// GPU bytes one point takes: four vertices of 20 bytes and six 32-bit indices. Memory
/// budgets count in these.
pub const GPU_BYTES_PER_POINT: u64 = 4 * 20 + 6 * 4;

/// The mesh of one node's points.
pub fn node_mesh(points: &[Point]) -> Mesh {
    let n = points.len();
    let mut positions = Vec::with_capacity(n * 4);
    let mut colours = Vec::with_capacity(n * 4);
    let mut data = Vec::with_capacity(n * 4);
    let mut indices = Vec::with_capacity(n * 6);
    for (i, p) in points.iter().enumerate() {
        let [r, g, b] = p.colour;
        let packed = u32::from(p.intensity) | u32::from(p.class) << 16;
        for corner in 0..4u32 {
            positions.push(p.position);
            colours.push([r, g, b, 255]);
            data.push(packed | corner << 24);
        }
        let first = (i * 4) as u32;
        indices.extend_from_slice(&[first, first + 1, first + 2, first, first + 2, first + 3]);
    }
    // The CPU copy is dropped once on the GPU: a node's memory is counted once.
    Mesh::new(PrimitiveTopology::TriangleList, RenderAssetUsages::RENDER_WORLD)
        .with_inserted_attribute(Mesh::ATTRIBUTE_POSITION, positions)
        .with_inserted_attribute(ATTRIBUTE_POINT_COLOUR, VertexAttributeValues::Unorm8x4(colours))
        .with_inserted_attribute(ATTRIBUTE_POINT_DATA, data)
        .with_inserted_indices(Indices::U32(indices))
}

/// What the point shader needs to know of a cloud and a level.
#[derive(Debug, Clone, Copy, PartialEq, ShaderType)]
pub struct PointSettings {
    /// 0 scan colour, 1 intensity, 2 classification, 3 elevation.
    pub colouring: u32,
    /// Smallest point size, pixels.
    pub min_px: f32,
    /// Largest point size, pixels.
    pub max_px: f32,
    /// Distance between neighbouring points of the level, in the cloud's units.
    pub spacing: f32,
    /// Lowest world height, for the elevation ramp.
    pub low: f32,
    /// Highest world height.
    pub high: f32,
    /// One over the scan's largest intensity.
    pub intensity_scale: f32,
    /// Whether the scan has colours (1) or is drawn grey (0).
    pub has_colour: u32,
}

/// Number of a colouring mode in the shader.
pub fn colouring_index(colouring: CloudColouring) -> u32 {
    match colouring {
        CloudColouring::Rgb => 0,
        CloudColouring::Intensity => 1,
        CloudColouring::Classification => 2,
        CloudColouring::Elevation => 3,
    }
}

/// The material of one level of one cloud.
#[derive(Asset, TypePath, AsBindGroup, Debug, Clone)]
pub struct PointMaterial {
    /// The shader's settings.
    #[uniform(0)]
    pub settings: PointSettings,
}

impl Material for PointMaterial {
    fn vertex_shader() -> ShaderRef {
        ShaderRef::Handle(POINTS_SHADER)
    }

    fn fragment_shader() -> ShaderRef {
        ShaderRef::Handle(POINTS_SHADER)
    }

    // Points are lit by eye-dome lighting, not by the venue's lights: no shadow or prepass.
    fn enable_prepass() -> bool {
        false
    }

    fn enable_shadows() -> bool {
        false
    }

    fn specialize(
        _pipeline: &MaterialPipeline,
        descriptor: &mut RenderPipelineDescriptor,
        layout: &MeshVertexBufferLayoutRef,
        _key: MaterialPipelineKey<Self>,
    ) -> Result<(), SpecializedMeshPipelineError> {
        let vertex_layout = layout.0.get_layout(&[
            Mesh::ATTRIBUTE_POSITION.at_shader_location(0),
            ATTRIBUTE_POINT_COLOUR.at_shader_location(1),
            ATTRIBUTE_POINT_DATA.at_shader_location(2),
        ])?;
        descriptor.vertex.buffers = vec![vertex_layout];
        // A quad faces the camera whatever the winding after the clip-space push.
        descriptor.primitive.cull_mode = None;
        Ok(())
    }
}

/// Registers the point material and its shader.
pub struct PointMaterialPlugin;

impl Plugin for PointMaterialPlugin {
    fn build(&self, app: &mut App) {
        load_internal_asset!(app, POINTS_SHADER, "../../../shaders/points.wgsl", Shader::from_wgsl);
        app.add_plugins(MaterialPlugin::<PointMaterial>::default());
    }
}
