// Chan et al.'s merge of running statistics: (count, mean, M2) of the union of two disjoint sets,
// stable even when |mean| ≫ std. Used where lanes or chunks of Welford updates meet.

fn chanMerge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
  let count = a.x + b.x;
  if (b.x == 0.0) {
    return a;
  }
  let delta = b.y - a.y;
  return vec3<f32>(count, a.y + delta * b.x / count, a.z + b.z + delta * delta * a.x * b.x / count);
}
