//! Writing batches of rows: Parquet row groups or CSV lines, into a
//! temporary file renamed into place when the export succeeds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::rows::{str_at, Column, Kind, Table, TABLES};
use super::TableFormat;
use crate::error::{Error, Result};
use crate::spe::out::LatchedWriter;

/// Where batches go.
enum Writer {
    Parquet(Box<parquet::file::writer::SerializedFileWriter<std::fs::File>>),
    Csv(LatchedWriter<std::io::BufWriter<std::fs::File>>),
}

fn pq(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::Usage(format!("{}: writing Parquet: {e}", path.display()))
}

fn parquet_schema(name: &str, cols: &[(&str, Kind)]) -> String {
    let mut s = format!("message {name} {{\n");
    for (c, k) in cols {
        let ty = match k {
            Kind::Int => "int64",
            Kind::Bool => "boolean",
            Kind::Str => "binary",
        };
        let ann = if *k == Kind::Str { " (STRING)" } else { "" };
        s += &format!("  required {ty} {c}{ann};\n");
    }
    s + "}\n"
}

fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// One output table: its file (written under a temporary name until the
/// export succeeds) and its buffered rows.
pub(super) struct Output {
    path: PathBuf,
    pub(super) tmp: PathBuf,
    writer: Writer,
    pub(super) table: Table,
    pub(super) written: u64,
}

impl Output {
    pub(super) fn create(
        dir: &Path,
        prefix: &str,
        t: usize,
        format: TableFormat,
    ) -> Result<Output> {
        let (name, cols) = TABLES[t];
        let path = dir.join(format!("{prefix}-{name}.{}", format.ext()));
        let tmp = dir.join(format!(".{prefix}-{name}.{}.tmp", format.ext()));
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let writer = match format {
            TableFormat::Parquet => {
                use parquet::basic::Compression;
                use parquet::file::properties::WriterProperties;
                let schema =
                    parquet::schema::parser::parse_message_type(&parquet_schema(name, cols))
                        .map_err(pq(&path))?;
                use parquet::file::properties::EnabledStatistics;
                use parquet::schema::types::ColumnPath;
                let mut props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_created_by(format!("hyperprof {}", env!("CARGO_PKG_VERSION")));
                // Min/max of strings cost a comparison per value and prune
                // nothing (hex text); data addresses rarely repeat, so a
                // dictionary does not pay for them.
                for (c, k) in cols {
                    if *k == Kind::Str {
                        props = props.set_column_statistics_enabled(
                            ColumnPath::from(*c),
                            EnabledStatistics::None,
                        );
                    }
                    if matches!(*c, "vaddr" | "paddr") {
                        props = props.set_column_dictionary_enabled(ColumnPath::from(*c), false);
                    }
                }
                let props = props.build();
                Writer::Parquet(Box::new(
                    parquet::file::writer::SerializedFileWriter::new(
                        file,
                        Arc::new(schema),
                        Arc::new(props),
                    )
                    .map_err(pq(&path))?,
                ))
            }
            TableFormat::Csv => {
                let mut w = LatchedWriter::new(std::io::BufWriter::new(file));
                let header: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
                w.write(header.join(",").as_bytes());
                w.write(b"\n");
                Writer::Csv(w)
            }
        };
        Ok(Output {
            path,
            tmp,
            writer,
            table: Table::new(cols),
            written: 0,
        })
    }

    pub(super) fn flush(&mut self) -> Result<()> {
        if self.table.rows == 0 {
            return Ok(());
        }
        match &mut self.writer {
            Writer::Parquet(w) => {
                use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
                let err = pq(&self.path);
                let mut rg = w.next_row_group().map_err(&err)?;
                for col in &self.table.columns {
                    let Some(mut cw) = rg.next_column().map_err(&err)? else {
                        break;
                    };
                    match col {
                        Column::Int(v) => {
                            cw.typed::<Int64Type>()
                                .write_batch(v, None, None)
                                .map_err(&err)?;
                        }
                        Column::Bool(v) => {
                            cw.typed::<BoolType>()
                                .write_batch(v, None, None)
                                .map_err(&err)?;
                        }
                        Column::Str { data, ends } => {
                            // One shared buffer, sliced: no copy per value.
                            let all = bytes::Bytes::copy_from_slice(data);
                            let mut start = 0;
                            let b: Vec<ByteArray> = ends
                                .iter()
                                .map(|&end| {
                                    let v = ByteArray::from(all.slice(start..end));
                                    start = end;
                                    v
                                })
                                .collect();
                            cw.typed::<ByteArrayType>()
                                .write_batch(&b, None, None)
                                .map_err(&err)?;
                        }
                    }
                    cw.close().map_err(&err)?;
                }
                rg.close().map_err(&err)?;
            }
            Writer::Csv(w) => {
                let mut line = String::new();
                for i in 0..self.table.rows {
                    line.clear();
                    for (j, col) in self.table.columns.iter().enumerate() {
                        if j > 0 {
                            line.push(',');
                        }
                        match col {
                            Column::Int(v) => line += &v[i].to_string(),
                            Column::Bool(v) => line += if v[i] { "True" } else { "False" },
                            Column::Str { data, ends } => {
                                line += &csv_field(&String::from_utf8_lossy(str_at(data, ends, i)))
                            }
                        }
                    }
                    line.push('\n');
                    w.write(line.as_bytes());
                }
                if w.failed() {
                    return Ok(());
                }
            }
        }
        self.written += self.table.rows as u64;
        self.table.clear();
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<PathBuf> {
        self.flush()?;
        match self.writer {
            Writer::Parquet(w) => {
                w.close().map_err(pq(&self.path))?;
            }
            Writer::Csv(w) => {
                w.finish().map_err(|e| Error::io(&self.tmp, e))?;
            }
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_they_must_be() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
        assert!(parquet_schema("t", TABLES[1].1).contains("required binary br_tgt (STRING);"));
    }
}
