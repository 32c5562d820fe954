//! A scanned mesh's materials as glTF 2.0 describes them, read at import and kept in the
//! mesh cache, so that every level of detail is drawn with the look the scan was made with:
//! the core metallic-roughness properties (base colour, metallic-roughness, normal, occlusion
//! and emissive textures, alpha mode, double sides) and the extensions Bevy's own glTF path
//! draws (`KHR_texture_transform`, `KHR_materials_emissive_strength`, `KHR_materials_unlit`).
//! What Bevy does not draw either (a normal map's scale, occlusion strength) is left out. A
//! texture on a second set of texture coordinates (`TEXCOORD_1`), which Bevy's glTF path does
//! draw, is drawn with the first set here, and said in the import's notes: the cache keeps one
//! set (as it keeps no vertex colours, also noted).

use serde::{Deserialize, Serialize};

/// How a material's alpha is used.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum AlphaUse {
    /// Alpha ignored.
    #[default]
    Opaque,
    /// Drawn where alpha is at least the cutoff, not elsewhere (foliage, lace).
    Mask(f32),
    /// Blended with what is behind.
    Blend,
}

/// How a texture repeats beyond 0–1 (glTF sampler wrap modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Wrap {
    /// Tiles (glTF's default).
    #[default]
    Repeat,
    /// Tiles, every other tile mirrored.
    MirroredRepeat,
    /// The edge texel stretches on.
    ClampToEdge,
}

/// How a texture is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Sampling {
    /// Along u.
    pub wrap_u: Wrap,
    /// Along v.
    pub wrap_v: Wrap,
    /// Magnified without smoothing (pixel art, labels), as the file asks.
    pub nearest: bool,
    /// Minified without smoothing, as the file asks.
    #[serde(default)]
    pub min_nearest: bool,
}

/// `KHR_texture_transform` of the base colour texture, which Bevy applies to all of a
/// material's textures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UvTransform {
    /// Offset.
    pub offset: [f32; 2],
    /// Rotation, radians, counter-clockwise.
    pub rotation: f32,
    /// Scale.
    pub scale: [f32; 2],
}

/// A material's properties; texture slots index the part's textures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaterialDesc {
    /// Base colour factor, linear RGBA.
    pub base_colour: [f32; 4],
    /// Base colour texture (sRGB).
    pub base_colour_texture: Option<usize>,
    /// Metallic factor.
    pub metallic: f32,
    /// Roughness factor.
    pub roughness: f32,
    /// Metallic (blue) and roughness (green) texture (linear).
    pub metallic_roughness_texture: Option<usize>,
    /// Tangent-space normal map (linear).
    pub normal_texture: Option<usize>,
    /// Ambient occlusion (red, linear).
    pub occlusion_texture: Option<usize>,
    /// Emitted light, linear RGB, the emissive strength applied.
    pub emissive: [f32; 3],
    /// Emissive texture (sRGB).
    pub emissive_texture: Option<usize>,
    /// How alpha is used.
    pub alpha: AlphaUse,
    /// Drawn from both sides (single-sheet cloth, leaves), not culled from behind.
    pub double_sided: bool,
    /// Not lit: the colour as scanned (`KHR_materials_unlit`).
    pub unlit: bool,
    /// Texture coordinate transform.
    pub uv_transform: Option<UvTransform>,
}

impl Default for MaterialDesc {
    /// glTF's default material.
    fn default() -> Self {
        Self {
            base_colour: [1.0; 4],
            base_colour_texture: None,
            metallic: 1.0,
            roughness: 1.0,
            metallic_roughness_texture: None,
            normal_texture: None,
            occlusion_texture: None,
            emissive: [0.0; 3],
            emissive_texture: None,
            alpha: AlphaUse::Opaque,
            double_sided: false,
            unlit: false,
            uv_transform: None,
        }
    }
}

impl MaterialDesc {
    /// The texture slots in use, with whether each holds colour (sRGB) data.
    pub fn slots(&self) -> impl Iterator<Item = (usize, bool)> + '_ {
        [
            (self.base_colour_texture, true),
            (self.metallic_roughness_texture, false),
            (self.normal_texture, false),
            (self.occlusion_texture, false),
            (self.emissive_texture, true),
        ]
        .into_iter()
        .filter_map(|(slot, srgb)| slot.map(|t| (t, srgb)))
    }
}

/// What a texture slot of a glTF material names.
pub struct SlotRef {
    /// The image's index in the file.
    pub image: usize,
    /// Colour data (sRGB) or not.
    pub srgb: bool,
    /// How it is sampled.
    pub sampling: Sampling,
    /// The slot's name, for notes.
    pub what: &'static str,
}

/// Reads a glTF material's properties; `texture` is called for each texture slot in use and
/// returns the part's texture index for it, or `None` when the image could not be had (the
/// material is then drawn without it). Notes what is left out.
pub fn read_material(
    material: &gltf::Material,
    mut texture: impl FnMut(SlotRef) -> Option<usize>,
    notes: &mut Vec<String>,
) -> MaterialDesc {
    let name = material.name().map_or_else(|| format!("{:?}", material.index()), |n| format!("{n:?}"));
    let mut slot = |info: Option<(gltf::Texture, u32)>, srgb: bool, what: &'static str| {
        let (tex, tex_coord) = info?;
        if tex_coord != 0 {
            notes.push(format!("material {name}: its {what} texture uses TEXCOORD_{tex_coord}; drawn with TEXCOORD_0"));
        }
        texture(SlotRef { image: tex.source().index(), srgb, sampling: sampling(&tex.sampler()), what })
    };
    let pbr = material.pbr_metallic_roughness();
    let base_colour_texture = slot(pbr.base_color_texture().map(|i| (i.texture(), i.tex_coord())), true, "base colour");
    let metallic_roughness_texture =
        slot(pbr.metallic_roughness_texture().map(|i| (i.texture(), i.tex_coord())), false, "metallic-roughness");
    let normal_texture = slot(material.normal_texture().map(|i| (i.texture(), i.tex_coord())), false, "normal");
    let occlusion_texture =
        slot(material.occlusion_texture().map(|i| (i.texture(), i.tex_coord())), false, "occlusion");
    let emissive_texture = slot(material.emissive_texture().map(|i| (i.texture(), i.tex_coord())), true, "emissive");
    let strength = material.emissive_strength().unwrap_or(1.0);
    let uv_transform = pbr.base_color_texture().and_then(|i| i.texture_transform()).map(|t| UvTransform {
        offset: t.offset(),
        rotation: t.rotation(),
        scale: t.scale(),
    });
    MaterialDesc {
        base_colour: pbr.base_color_factor(),
        base_colour_texture,
        metallic: pbr.metallic_factor(),
        roughness: pbr.roughness_factor(),
        metallic_roughness_texture,
        normal_texture,
        occlusion_texture,
        emissive: material.emissive_factor().map(|c| c * strength),
        emissive_texture,
        alpha: match material.alpha_mode() {
            gltf::material::AlphaMode::Opaque => AlphaUse::Opaque,
            gltf::material::AlphaMode::Mask => AlphaUse::Mask(material.alpha_cutoff().unwrap_or(0.5)),
            gltf::material::AlphaMode::Blend => AlphaUse::Blend,
        },
        double_sided: material.double_sided(),
        unlit: material.unlit(),
        uv_transform,
    }
}

fn sampling(sampler: &gltf::texture::Sampler) -> Sampling {
    use gltf::texture::{MagFilter, MinFilter, WrappingMode};
    let wrap = |mode: WrappingMode| match mode {
        WrappingMode::Repeat => Wrap::Repeat,
        WrappingMode::MirroredRepeat => Wrap::MirroredRepeat,
        WrappingMode::ClampToEdge => Wrap::ClampToEdge,
    };
    Sampling {
        wrap_u: wrap(sampler.wrap_s()),
        wrap_v: wrap(sampler.wrap_t()),
        nearest: sampler.mag_filter() == Some(MagFilter::Nearest),
        min_nearest: matches!(
            sampler.min_filter(),
            Some(MinFilter::Nearest | MinFilter::NearestMipmapNearest | MinFilter::NearestMipmapLinear)
        ),
    }
}
