//! Image thumbnails (ADR 0015, "Thumbnails"): a small JPEG preview made from an image's
//! (metadata-stripped) bytes, which the SDK encrypts as its own blob with its own key.
//!
//! Decoding untrusted images is bounded three ways before any pixel buffer is allocated: the
//! encoded image must be at most [`MAX_THUMBNAIL_SOURCE_BYTES`], its declared dimensions at
//! most [`MAX_THUMBNAIL_SOURCE_SIDE`] per side and [`MAX_THUMBNAIL_SOURCE_PIXELS`] in all (read
//! from the header alone), and the decoder may allocate at most [`MAX_THUMBNAIL_DECODE_BYTES`]
//! (the `image` crate's `Limits`, checked against the decoded buffer's size before it is
//! allocated). A failure is an error the caller logs and drops: an attachment is sent without
//! a thumbnail rather than not at all.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use super::inspect::essence;

/// The thumbnail fits within this many pixels on each side (aspect ratio kept, never
/// upscaled).
pub const THUMBNAIL_MAX_SIDE: u32 = 320;
/// JPEG quality of a thumbnail (1–100).
pub const THUMBNAIL_JPEG_QUALITY: u8 = 70;
/// JPEG quality of the second attempt when the first came out larger than
/// [`THUMBNAIL_TARGET_BYTES`] (noisy images).
const THUMBNAIL_FALLBACK_QUALITY: u8 = 40;
/// Size a thumbnail should stay under (32 KiB); above it the encoder tries once more at a
/// lower quality.
pub const THUMBNAIL_TARGET_BYTES: usize = 32 * 1024;
/// Largest thumbnail a sender produces and a recipient accepts (256 KiB of JPEG, more than a
/// 320x320 image at any quality needs in practice). It bounds what a recipient decrypts in
/// memory.
pub const MAX_THUMBNAIL_BYTES: u64 = 256 * 1024;
/// Media type of every thumbnail.
pub const THUMBNAIL_MEDIA_TYPE: &str = "image/jpeg";
/// Largest encoded image that is decoded for a thumbnail (50 MiB): a larger file is sent
/// without one and never decoded.
pub const MAX_THUMBNAIL_SOURCE_BYTES: u64 = 50 * 1024 * 1024;
/// Most pixels (width × height, as the header declares them) of an image that is decoded for
/// a thumbnail: 100 megapixels.
pub const MAX_THUMBNAIL_SOURCE_PIXELS: u64 = 100_000_000;
/// Longest side of an image that is decoded for a thumbnail.
pub const MAX_THUMBNAIL_SOURCE_SIDE: u32 = 32_768;
/// Most memory the decoder may allocate (256 MiB, the decoded pixels included): an 8-bit RGB
/// image of up to about 89 megapixels, an RGBA one of about 67.
pub const MAX_THUMBNAIL_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// Why no thumbnail could be made. None of the messages carries image content.
///
/// Kinds (STYLE.md §4): refused input (`Unsupported`, `SourceTooLarge`, `TooManyPixels`,
/// `OutOfMemoryBudget`), invalid input (`Decode`), dependency failure (`Encode`).
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThumbnailError {
    /// The media type is not one this version decodes (JPEG, PNG, GIF).
    #[error("no thumbnail for {0}: only JPEG, PNG and GIF images are decoded")]
    Unsupported(String),
    /// The encoded image is larger than [`MAX_THUMBNAIL_SOURCE_BYTES`].
    #[error("image is {size} bytes, more than the {max}-byte limit for making a thumbnail")]
    SourceTooLarge {
        /// The image's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The header declares more pixels than [`MAX_THUMBNAIL_SOURCE_PIXELS`] or a side longer
    /// than [`MAX_THUMBNAIL_SOURCE_SIDE`] (a decompression bomb, or a huge scan).
    #[error(
        "image declares {width}x{height} pixels, more than the limit for making a thumbnail \
         ({MAX_THUMBNAIL_SOURCE_PIXELS} pixels, {MAX_THUMBNAIL_SOURCE_SIDE} per side)"
    )]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// Decoding would need more memory than [`MAX_THUMBNAIL_DECODE_BYTES`].
    #[error("decoding the image would need more than {max} bytes of memory")]
    OutOfMemoryBudget {
        /// The limit.
        max: u64,
    },
    /// The image is corrupt, truncated or not of its declared type.
    #[error("image could not be decoded for a thumbnail: {0}")]
    Decode(String),
    /// The JPEG encoder failed, or every attempt exceeded [`MAX_THUMBNAIL_BYTES`].
    #[error("thumbnail could not be encoded: {0}")]
    Encode(String),
}

/// A thumbnail: a baseline JPEG (JFIF, no EXIF or other metadata) within
/// [`THUMBNAIL_MAX_SIDE`] pixels on each side.
#[derive(Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// The JPEG bytes.
    pub jpeg: Vec<u8>,
    /// Its width in pixels.
    pub width: u32,
    /// Its height in pixels.
    pub height: u32,
}

impl std::fmt::Debug for Thumbnail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pixels are clinical content.
        f.debug_struct("Thumbnail")
            .field("bytes", &self.jpeg.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// True when [`make_thumbnail`] decodes this media type (JPEG, PNG, GIF; parameters ignored).
pub fn thumbnail_supported(media_type: &str) -> bool {
    source_format(media_type).is_some()
}

/// Makes a thumbnail of an image: decodes `data` (of the checked `media_type`, already
/// stripped of its metadata) within the limits above, scales it to fit within
/// [`THUMBNAIL_MAX_SIDE`]² keeping its aspect ratio (a smaller image keeps its size),
/// composites transparency over white, and encodes it as a JPEG of quality
/// [`THUMBNAIL_JPEG_QUALITY`] (once more at a lower quality if it came out over
/// [`THUMBNAIL_TARGET_BYTES`]). Never panics, whatever the bytes.
pub fn make_thumbnail(media_type: &str, data: &[u8]) -> Result<Thumbnail, ThumbnailError> {
    make_thumbnail_within(media_type, data, MAX_THUMBNAIL_DECODE_BYTES)
}

pub(crate) fn make_thumbnail_within(
    media_type: &str,
    data: &[u8],
    max_alloc: u64,
) -> Result<Thumbnail, ThumbnailError> {
    let format = source_format(media_type)
        .ok_or_else(|| ThumbnailError::Unsupported(essence(media_type)))?;
    let size = data.len() as u64;
    if size > MAX_THUMBNAIL_SOURCE_BYTES {
        return Err(ThumbnailError::SourceTooLarge {
            size,
            max: MAX_THUMBNAIL_SOURCE_BYTES,
        });
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_THUMBNAIL_SOURCE_SIDE);
    limits.max_image_height = Some(MAX_THUMBNAIL_SOURCE_SIDE);
    limits.max_alloc = Some(max_alloc);
    let reader = |limits: Limits| {
        let mut r = ImageReader::with_format(Cursor::new(data), format);
        r.limits(limits);
        r
    };
    // The header alone first: a bomb is refused before the decoder allocates anything.
    let (width, height) = reader(limits.clone())
        .into_dimensions()
        .map_err(|e| decode_error(e, max_alloc))?;
    if width == 0
        || height == 0
        || width > MAX_THUMBNAIL_SOURCE_SIDE
        || height > MAX_THUMBNAIL_SOURCE_SIDE
        || u64::from(width) * u64::from(height) > MAX_THUMBNAIL_SOURCE_PIXELS
    {
        return Err(ThumbnailError::TooManyPixels { width, height });
    }
    let image = reader(limits)
        .decode()
        .map_err(|e| decode_error(e, max_alloc))?;
    let (tw, th) = fit(image.width(), image.height(), THUMBNAIL_MAX_SIDE);
    let scaled = if (tw, th) == (image.width(), image.height()) {
        image
    } else {
        image.thumbnail_exact(tw, th)
    };
    let rgb = over_white(scaled);
    let mut jpeg = encode(&rgb, THUMBNAIL_JPEG_QUALITY)?;
    if jpeg.len() > THUMBNAIL_TARGET_BYTES {
        jpeg = encode(&rgb, THUMBNAIL_FALLBACK_QUALITY)?;
    }
    if jpeg.len() as u64 > MAX_THUMBNAIL_BYTES {
        return Err(ThumbnailError::Encode(format!(
            "the thumbnail is {} bytes, more than {MAX_THUMBNAIL_BYTES}",
            jpeg.len()
        )));
    }
    Ok(Thumbnail {
        jpeg,
        width: rgb.width(),
        height: rgb.height(),
    })
}

/// The size of a `width`x`height` image scaled to fit within `max`x`max`, aspect ratio kept
/// (rounded, at least 1 pixel per side); never larger than the original.
pub fn fit(width: u32, height: u32, max: u32) -> (u32, u32) {
    if width <= max && height <= max {
        return (width, height);
    }
    let (w, h, m) = (u64::from(width), u64::from(height), u64::from(max));
    let (nw, nh) = if w >= h {
        (m, (h * m + w / 2) / w)
    } else {
        ((w * m + h / 2) / h, m)
    };
    // Both are at most `max`, so they fit in u32.
    (
        u32::try_from(nw.max(1)).unwrap_or(max),
        u32::try_from(nh.max(1)).unwrap_or(max),
    )
}

fn source_format(media_type: &str) -> Option<ImageFormat> {
    match essence(media_type).as_str() {
        "image/jpeg" | "image/jpg" | "image/pjpeg" => Some(ImageFormat::Jpeg),
        "image/png" => Some(ImageFormat::Png),
        "image/gif" => Some(ImageFormat::Gif),
        _ => None,
    }
}

fn decode_error(e: ImageError, max_alloc: u64) -> ThumbnailError {
    match e {
        ImageError::Limits(l) => match l.kind() {
            image::error::LimitErrorKind::InsufficientMemory => {
                ThumbnailError::OutOfMemoryBudget { max: max_alloc }
            }
            _ => ThumbnailError::Decode(l.to_string()),
        },
        other => ThumbnailError::Decode(other.to_string()),
    }
}

/// 8-bit RGB, with any transparency composited over white (JPEG has no alpha; a transparent
/// PNG's hidden colour values would otherwise show).
fn over_white(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let blend = |c: u8| {
            let (c, a) = (u16::from(c), u16::from(a));
            // c·a + 255·(255−a), over 255, rounded; at most 255.
            ((c * a + 255 * (255 - a) + 127) / 255) as u8
        };
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}

fn encode(rgb: &RgbImage, quality: u8) -> Result<Vec<u8>, ThumbnailError> {
    let mut out = Vec::with_capacity(THUMBNAIL_TARGET_BYTES);
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(rgb)
        .map_err(|e| ThumbnailError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
#[path = "thumbnail_tests.rs"]
mod tests;
