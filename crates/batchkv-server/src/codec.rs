//! The codec of etcd's services: prost's, except that a response's buffer is sized once.
//!
//! tonic's prost encoder writes a message into a buffer that starts at 8 KiB and doubles as it
//! fills, so a 1,000-key Range answer (about 150 KB) was copied five times over while it grew,
//! and its large allocations went to `mmap` and back each time (in a profile of the range
//! benchmark, 14% of the server's CPU in `memmove` and 6-8% more in `malloc`). Reserving the
//! message's encoded length first makes it one allocation and one write. Decoding is prost's.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder};

/// [`tonic_prost::ProstCodec`] with an encoder that reserves each message's size.
#[derive(Debug, Clone, Default)]
pub struct ReservingCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Codec for ReservingCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ReservingEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ReservingEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::default())
    }
}

/// Encodes a prost message into a buffer reserved to its encoded length.
#[derive(Debug, Clone, Default)]
pub struct ReservingEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for ReservingEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a response: {e}")))
    }
}
