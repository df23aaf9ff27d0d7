//!include row_lanes.wgsl
// Between a STATISTICS epilogue (gemm.wgsl: tiles of 128 rows; depthwise_conv.wgsl: an image's
// rows) and bias_gelu_batchnorm_normalize.wgsl: merges the per-tile (mean, M2) of tiles of
// rowsPerTile rows (the last one short) into chunks of tilesPerChunk tiles with Chan's formula, on
// the row-lanes skeleton with a tile as the row: partial[chunk] = (mean[C], M2[C]). Without it
// every normalising workgroup would merge all the tiles (a thousand at batch 512).

struct Params {
  R: u32,
  C: u32,
  tiles: u32,
  tilesPerChunk: u32,
  rowsPerTile: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> tilePartial: array<f32>; // [tiles, 2, C]
@group(0) @binding(2) var<storage, read_write> partial: array<f32>; // [chunks, 2, C]

@compute @workgroup_size(WG_CHANNELS, WG_ROW_LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let C = params.C;
  let c = laneChannel(wid, lid);
  var acc = vec3<f32>();
  if (c < C) {
    let tiles = laneRows(wid.z, params.tilesPerChunk, params.tiles, lid);
    for (var t = tiles.x; t < tiles.y; t += WG_ROW_LANES) {
      let n = f32(min(params.rowsPerTile, params.R - t * params.rowsPerTile));
      acc = chanMerge(acc, vec3<f32>(n, tilePartial[t * 2u * C + c], tilePartial[(t * 2u + 1u) * C + c]));
    }
  }
  let merged = mergeRowLanes(acc, lid);
  if (lid.y == 0u && c < C) {
    partial[wid.z * 2u * C + c] = merged.y;
    partial[(wid.z * 2u + 1u) * C + c] = merged.z;
  }
}
