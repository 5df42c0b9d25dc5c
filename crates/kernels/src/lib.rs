//! norma-kernels (under construction)
