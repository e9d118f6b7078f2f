//! Bastion (ProxyJump) support: reaching a host through a `direct-tcpip` channel opened on an
//! SSH connection to a jump host. Owns nothing but the tunnel; host keys and authentication of
//! both hops are checked exactly as for a direct connection.
