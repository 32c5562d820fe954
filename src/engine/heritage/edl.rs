//! Eye-dome lighting as a post-process (`shaders/edl.wgsl`): it reads the main pass's depth,
//! which Bevy's own full-screen material cannot, so it is a small render system of its own.
//! A camera shows it when it has [`EyeDomeLighting`]; such a camera renders without MSAA, so
//! that its depth is one sample per pixel.

use bevy::asset::{load_internal_asset, uuid_handle};
use bevy::camera::Camera3dDepthTextureUsage;
use bevy::core_pipeline::tonemapping::tonemapping;
use bevy::core_pipeline::{Core3d, Core3dSystems, FullscreenShader};
use bevy::prelude::*;
use bevy::render::extract_component::{
    ComponentUniforms, DynamicUniformIndex, ExtractComponent, ExtractComponentPlugin, UniformComponentPlugin,
};
use bevy::render::render_resource::binding_types::{texture_2d, texture_depth_2d, uniform_buffer};
use bevy::render::render_resource::{
    BindGroupEntries, BindGroupLayoutDescriptor, BindGroupLayoutEntries, CachedRenderPipelineId, ColorTargetState,
    ColorWrites, FragmentState, Operations, PipelineCache, RenderPassColorAttachment, RenderPassDescriptor,
    RenderPipelineDescriptor, ShaderStages, ShaderType, SpecializedRenderPipeline, SpecializedRenderPipelines,
    TextureFormat, TextureSampleType, TextureUsages, VertexState,
};
use bevy::render::renderer::{RenderContext, RenderDevice, ViewQuery};
use bevy::render::view::{ExtractedView, ViewDepthTexture, ViewTarget};
use bevy::render::{Render, RenderApp, RenderStartup, RenderSystems};
use bevy::shader::Shader;

const EDL_SHADER: Handle<Shader> = uuid_handle!("0c6f3f0e-2d52-4a8e-8f7e-5d3c9b1a6e42");

/// Eye-dome lighting on a camera.
#[derive(Component, Debug, Clone, Copy, PartialEq, ExtractComponent, ShaderType)]
pub struct EyeDomeLighting {
    /// How dark edges get (Potree's default is 1).
    pub strength: f32,
    /// How far apart, in pixels, depths are compared.
    pub radius_px: f32,
}

impl Default for EyeDomeLighting {
    fn default() -> Self {
        Self { strength: 0.6, radius_px: 1.4 }
    }
}

/// Adds the eye-dome lighting pass.
pub struct EyeDomeLightingPlugin;

impl Plugin for EyeDomeLightingPlugin {
    fn build(&self, app: &mut App) {
        load_internal_asset!(app, EDL_SHADER, "../../../shaders/edl.wgsl", Shader::from_wgsl);
        app.add_plugins((
            ExtractComponentPlugin::<EyeDomeLighting>::default(),
            UniformComponentPlugin::<EyeDomeLighting>::default(),
        ))
        .add_observer(prepare_camera)
        .add_observer(restore_camera);
        let Some(render_app) = app.get_sub_app_mut(RenderApp) else { return };
        render_app
            .init_resource::<SpecializedRenderPipelines<EdlPipeline>>()
            .add_systems(RenderStartup, init_pipeline)
            .add_systems(Render, specialize_pipelines.in_set(RenderSystems::Prepare))
            .add_systems(Core3d, edl_pass.in_set(Core3dSystems::PostProcess).before(tonemapping));
    }
}

/// A camera's anti-aliasing before eye-dome lighting turned it off, given back on removal.
#[derive(Component, Debug, Clone, Copy)]
struct MsaaBeforeEdl(Msaa);

/// The pass samples the depth buffer, one sample per pixel.
fn prepare_camera(
    add: On<Add, EyeDomeLighting>,
    mut commands: Commands,
    mut cameras: Query<(&mut Camera3d, &mut Msaa)>,
) {
    let Ok((mut camera, mut msaa)) = cameras.get_mut(add.entity) else { return };
    let usage = TextureUsages::from(camera.depth_texture_usages) | TextureUsages::TEXTURE_BINDING;
    camera.depth_texture_usages = Camera3dDepthTextureUsage::from(usage);
    commands.entity(add.entity).insert(MsaaBeforeEdl(*msaa));
    *msaa = Msaa::Off;
}

fn restore_camera(remove: On<Remove, EyeDomeLighting>, mut commands: Commands, before: Query<&MsaaBeforeEdl>) {
    if let Ok(MsaaBeforeEdl(msaa)) = before.get(remove.entity) {
        commands.entity(remove.entity).try_insert(*msaa).try_remove::<MsaaBeforeEdl>();
    }
}

#[derive(Resource)]
struct EdlPipeline {
    layout: BindGroupLayoutDescriptor,
    vertex: VertexState,
}

impl SpecializedRenderPipeline for EdlPipeline {
    type Key = TextureFormat;

    fn specialize(&self, format: TextureFormat) -> RenderPipelineDescriptor {
        RenderPipelineDescriptor {
            label: Some("eye-dome lighting".into()),
            layout: vec![self.layout.clone()],
            vertex: self.vertex.clone(),
            fragment: Some(FragmentState {
                shader: EDL_SHADER,
                targets: vec![Some(ColorTargetState { format, blend: None, write_mask: ColorWrites::ALL })],
                ..default()
            }),
            ..default()
        }
    }
}

fn init_pipeline(mut commands: Commands, fullscreen: Res<FullscreenShader>) {
    let layout = BindGroupLayoutDescriptor::new(
        "eye-dome lighting",
        &BindGroupLayoutEntries::sequential(
            ShaderStages::FRAGMENT,
            (
                texture_2d(TextureSampleType::Float { filterable: false }),
                uniform_buffer::<EyeDomeLighting>(true),
                texture_depth_2d(),
            ),
        ),
    );
    commands.insert_resource(EdlPipeline { layout, vertex: fullscreen.to_vertex_state() });
}

#[derive(Component)]
struct EdlPipelineId(CachedRenderPipelineId);

fn specialize_pipelines(
    mut commands: Commands,
    cache: Res<PipelineCache>,
    pipeline: Option<Res<EdlPipeline>>,
    mut pipelines: ResMut<SpecializedRenderPipelines<EdlPipeline>>,
    views: Query<(Entity, &ExtractedView), With<EyeDomeLighting>>,
) {
    let Some(pipeline) = pipeline else { return };
    for (entity, view) in &views {
        let id = pipelines.specialize(&cache, &pipeline, view.target_format);
        commands.entity(entity).insert(EdlPipelineId(id));
    }
}

fn edl_pass(
    view: ViewQuery<
        (&ViewTarget, &ViewDepthTexture, &DynamicUniformIndex<EyeDomeLighting>, &EdlPipelineId, &Msaa),
        With<EyeDomeLighting>,
    >,
    cache: Res<PipelineCache>,
    pipeline: Res<EdlPipeline>,
    uniforms: Res<ComponentUniforms<EyeDomeLighting>>,
    device: Res<RenderDevice>,
    mut ctx: RenderContext,
) {
    let (target, depth, index, id, msaa) = view.into_inner();
    // Until the camera's MSAA change has reached the render world, its depth is multisampled.
    if *msaa != Msaa::Off {
        return;
    }
    let (Some(render_pipeline), Some(binding)) = (cache.get_render_pipeline(id.0), uniforms.uniforms().binding())
    else {
        return;
    };
    let post = target.post_process_write();
    let bind_group = device.create_bind_group(
        "eye-dome lighting",
        &cache.get_bind_group_layout(&pipeline.layout),
        &BindGroupEntries::sequential((post.source, binding, depth.view())),
    );
    let mut pass = ctx.command_encoder().begin_render_pass(&RenderPassDescriptor {
        label: Some("eye-dome lighting"),
        color_attachments: &[Some(RenderPassColorAttachment {
            view: post.destination,
            depth_slice: None,
            resolve_target: None,
            ops: Operations::default(),
        })],
        depth_stencil_attachment: None,
        timestamp_writes: None,
        occlusion_query_set: None,
        multiview_mask: None,
    });
    pass.set_pipeline(render_pipeline);
    pass.set_bind_group(0, &bind_group, &[index.index()]);
    pass.draw(0..3, 0..1);
}
