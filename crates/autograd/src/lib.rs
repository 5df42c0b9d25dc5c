//! norma-autograd (under construction)
