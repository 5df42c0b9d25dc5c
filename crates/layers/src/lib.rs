//! norma-layers (under construction)
