use image::codecs::gif::GifEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, Rgba, RgbaImage};
use img_parts::jpeg::{Jpeg, markers};
use proptest::prelude::*;

use super::*;

/// A photo-like RGB image: smooth gradients plus a little texture.
fn photo(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let t = ((x * 7 + y * 13) % 17) as u8;
        image::Rgb([
            (x * 255 / width.max(1)) as u8 ^ t,
            (y * 255 / height.max(1)) as u8,
            ((x + y) % 256) as u8,
        ])
    })
}

fn jpeg_of(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(img)
        .unwrap();
    out
}

fn png_of(img: &RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgba8,
        )
        .unwrap();
    out
}

fn png_rgb_of(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// Decodes a thumbnail back, checking it is a JPEG.
fn decode_jpeg(bytes: &[u8]) -> DynamicImage {
    assert!(bytes.starts_with(&[0xFF, 0xD8]), "a JPEG");
    image::load_from_memory_with_format(bytes, ImageFormat::Jpeg).unwrap()
}

/// The markers of a JPEG's segments before its first scan.
fn segment_markers(bytes: &[u8]) -> Vec<u8> {
    let jpeg = Jpeg::from_bytes(img_parts::Bytes::copy_from_slice(bytes)).unwrap();
    jpeg.segments().iter().map(|s| s.marker()).collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid small PNG whose IHDR then claims `width`x`height` (CRC recomputed), so only the
/// header lies: a decompression bomb's shape.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = png_of(&RgbaImage::from_pixel(2, 2, Rgba([1, 2, 3, 255])));
    // Signature (8), IHDR length (4), "IHDR" (4), width, height, …; CRC after 13 data bytes.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn fit_keeps_the_aspect_ratio_and_never_upscales() {
    assert_eq!(fit(1200, 800, 320), (320, 213));
    assert_eq!(fit(800, 1200, 320), (213, 320));
    assert_eq!(fit(4000, 4000, 320), (320, 320));
    assert_eq!(fit(320, 100, 320), (320, 100));
    assert_eq!(fit(100, 50, 320), (100, 50));
    assert_eq!(fit(100_000, 10, 320), (320, 1), "at least one pixel");
    assert_eq!(fit(1, 1, 320), (1, 1));
}

#[test]
fn a_jpeg_photo_becomes_a_small_jpeg_within_320_without_metadata() {
    // A 1600x1200 photo with an EXIF block (GPS) inserted after SOI.
    let clean = jpeg_of(&photo(1600, 1200));
    let mut exif = vec![0xFF, markers::APP1];
    let payload = b"Exif\0\0MM\0\x2aGPS-52.2053N-0.1218E";
    exif.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    exif.extend_from_slice(payload);
    let mut source = clean[..2].to_vec();
    source.extend_from_slice(&exif);
    source.extend_from_slice(&clean[2..]);

    let t = make_thumbnail("image/jpeg", &source).unwrap();
    assert_eq!((t.width, t.height), (320, 240));
    let back = decode_jpeg(&t.jpeg);
    assert_eq!((back.width(), back.height()), (320, 240));
    assert!(t.jpeg.len() < 30 * 1024, "small: {} bytes", t.jpeg.len());
    let seen = segment_markers(&t.jpeg);
    assert!(
        !seen
            .iter()
            .any(|m| (markers::APP1..=markers::APP15).contains(m) || *m == markers::COM),
        "no metadata segments: {seen:x?}"
    );
    assert!(!contains(&t.jpeg, b"Exif") && !contains(&t.jpeg, b"GPS-52"));
    assert!(
        !format!("{t:?}").contains("jpeg: ["),
        "Debug shows no bytes"
    );
    // The colours survive the scaling: the left edge is dark red, the right edge bright.
    let rgb = back.to_rgb8();
    assert!(rgb.get_pixel(2, 120).0[0] < 80 && rgb.get_pixel(317, 120).0[0] > 170);
}

#[test]
fn a_transparent_png_portrait_becomes_a_jpeg_over_white() {
    let img = RgbaImage::from_fn(500, 1000, |x, _| {
        if x < 250 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([0, 0, 200, 255])
        }
    });
    let t = make_thumbnail("image/png", &png_of(&img)).unwrap();
    assert_eq!((t.width, t.height), (160, 320));
    let back = decode_jpeg(&t.jpeg).to_rgb8();
    assert_eq!(back.dimensions(), (160, 320));
    let left = back.get_pixel(20, 160).0;
    assert!(
        left.iter().all(|&c| c > 240),
        "transparent is white: {left:?}"
    );
    let right = back.get_pixel(140, 160).0;
    assert!(
        right[2] > 150 && right[0] < 60,
        "opaque blue stays: {right:?}"
    );
}

#[test]
fn small_images_are_not_upscaled() {
    let t = make_thumbnail("image/png", &png_rgb_of(&photo(100, 50))).unwrap();
    assert_eq!((t.width, t.height), (100, 50));
    assert_eq!(decode_jpeg(&t.jpeg).width(), 100);
    let t = make_thumbnail("image/jpeg; q=1", &jpeg_of(&photo(320, 17))).unwrap();
    assert_eq!((t.width, t.height), (320, 17));
}

#[test]
fn a_gif_gets_a_thumbnail_of_its_first_frame() {
    let img = RgbaImage::from_pixel(640, 64, Rgba([10, 200, 10, 255]));
    let mut gif = Vec::new();
    GifEncoder::new(&mut gif)
        .encode(img.as_raw(), 640, 64, ExtendedColorType::Rgba8)
        .unwrap();
    let t = make_thumbnail("image/gif", &gif).unwrap();
    assert_eq!((t.width, t.height), (320, 32));
    let px = decode_jpeg(&t.jpeg).to_rgb8().get_pixel(100, 16).0;
    assert!(px[1] > 150 && px[0] < 60, "{px:?}");
}

#[test]
fn noisy_images_still_come_out_small() {
    // Noise defeats JPEG compression: the encoder retries at a lower quality.
    let mut x = 0x1234_5678u32;
    let noise = RgbImage::from_fn(320, 320, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let b = x.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let t = make_thumbnail("image/png", &png_rgb_of(&noise)).unwrap();
    assert!(
        t.jpeg.len() as u64 <= MAX_THUMBNAIL_BYTES,
        "{}",
        t.jpeg.len()
    );
    assert_eq!(decode_jpeg(&t.jpeg).width(), 320);
}

#[test]
fn corrupt_and_unsupported_images_get_no_thumbnail() {
    let good = jpeg_of(&photo(400, 300));
    // Cut before the image data: nothing to decode.
    let sos = good
        .windows(2)
        .position(|w| w == [0xFF, markers::SOS])
        .unwrap();
    let e = make_thumbnail("image/jpeg", &good[..sos]).unwrap_err();
    assert!(matches!(e, ThumbnailError::Decode(_)), "{e:?}");
    // Cut inside the image data: the JPEG decoder shows what it has (grey below), or
    // refuses; either way no panic and nothing larger than a thumbnail.
    if let Ok(t) = make_thumbnail("image/jpeg", &good[..good.len() / 3]) {
        assert_eq!((t.width, t.height), (320, 240));
    }
    let e = make_thumbnail("image/jpeg", b"\xFF\xD8\xFF\xE0 not a jpeg").unwrap_err();
    assert!(matches!(e, ThumbnailError::Decode(_)), "{e:?}");
    let e = make_thumbnail("image/png", &good).unwrap_err();
    assert!(
        matches!(e, ThumbnailError::Decode(_)),
        "a JPEG is no PNG: {e:?}"
    );
    let e = make_thumbnail("image/png", b"").unwrap_err();
    assert!(matches!(e, ThumbnailError::Decode(_)), "{e:?}");
    let e = make_thumbnail("application/pdf", b"%PDF-1.7").unwrap_err();
    assert_eq!(e, ThumbnailError::Unsupported("application/pdf".into()));
    assert!(e.to_string().contains("application/pdf"));
    for t in ["image/webp", "image/heif", "image/tiff"] {
        assert!(!thumbnail_supported(t), "{t}");
    }
    assert!(thumbnail_supported("IMAGE/JPEG") && thumbnail_supported("image/gif"));
}

#[test]
fn decompression_bombs_are_refused_before_decoding() {
    // 20000x20000 declared: 400 megapixels.
    let e = make_thumbnail("image/png", &png_claiming(20_000, 20_000)).unwrap_err();
    assert_eq!(
        e,
        ThumbnailError::TooManyPixels {
            width: 20_000,
            height: 20_000
        }
    );
    assert!(e.to_string().contains("20000x20000"), "{e}");
    // One side over the limit, few pixels in all.
    let e = make_thumbnail("image/png", &png_claiming(40_000, 1)).unwrap_err();
    assert!(
        matches!(
            e,
            ThumbnailError::TooManyPixels { .. } | ThumbnailError::Decode(_)
        ),
        "{e:?}"
    );
    // A JPEG whose frame header claims 60000x60000.
    let mut jpeg = jpeg_of(&photo(16, 16));
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, markers::SOF0])
        .unwrap();
    jpeg[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
    let e = make_thumbnail("image/jpeg", &jpeg).unwrap_err();
    assert!(
        matches!(
            e,
            ThumbnailError::TooManyPixels { .. } | ThumbnailError::Decode(_)
        ),
        "{e:?}"
    );
    // Under the pixel limit but over the memory budget: 9000x9000 RGBA needs 324 MB.
    let e = make_thumbnail("image/png", &png_claiming(9_000, 9_000)).unwrap_err();
    assert_eq!(
        e,
        ThumbnailError::OutOfMemoryBudget {
            max: MAX_THUMBNAIL_DECODE_BYTES
        }
    );
    // The memory budget applies to real images too (a small budget here).
    let e =
        make_thumbnail_within("image/png", &png_rgb_of(&photo(1000, 1000)), 1 << 20).unwrap_err();
    assert_eq!(e, ThumbnailError::OutOfMemoryBudget { max: 1 << 20 });
}

#[test]
fn files_over_the_size_limit_are_never_decoded() {
    let big = vec![0u8; MAX_THUMBNAIL_SOURCE_BYTES as usize + 1];
    let e = make_thumbnail("image/jpeg", &big).unwrap_err();
    assert_eq!(
        e,
        ThumbnailError::SourceTooLarge {
            size: MAX_THUMBNAIL_SOURCE_BYTES + 1,
            max: MAX_THUMBNAIL_SOURCE_BYTES
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, alone or behind a real image signature, never panic the decoders.
    #[test]
    fn arbitrary_bytes_never_panic(
        kind in 0usize..3,
        magic in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let (media_type, signature): (&str, &[u8]) = [
            ("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0][..]),
            ("image/png", &b"\x89PNG\r\n\x1a\n"[..]),
            ("image/gif", &b"GIF89a"[..]),
        ][kind];
        let mut data = if magic { signature.to_vec() } else { Vec::new() };
        data.extend_from_slice(&body);
        if let Ok(t) = make_thumbnail(media_type, &data) {
            prop_assert!(t.width <= THUMBNAIL_MAX_SIDE && t.height <= THUMBNAIL_MAX_SIDE);
            prop_assert!(t.jpeg.starts_with(&[0xFF, 0xD8]));
        }
    }

    /// Mutations of a real image (a flipped byte, a cut) never panic either.
    #[test]
    fn mutated_images_never_panic(at in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<bool>()) {
        let mut png = png_rgb_of(&photo(40, 30));
        let i = at.index(png.len());
        if cut {
            png.truncate(i);
        } else {
            png[i] ^= 1 << bit;
        }
        let _ = make_thumbnail("image/png", &png);
    }
}
