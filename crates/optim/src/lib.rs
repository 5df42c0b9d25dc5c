//! norma-optim (under construction)
