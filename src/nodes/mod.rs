pub mod fit;
pub mod map;
