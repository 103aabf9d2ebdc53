//! Plans read from spreadsheets (`.xlsx`, `.xlsm`, `.ods`) with `calamine`.
//!
//! A sheet's rows become the same records the CSV reader makes: a list of cell texts and the
//! row number the spreadsheet shows as the record's line. They go through the same header,
//! row and cross-row checks (`header`, `checks`), so no rule of a plan is written twice; only
//! the loop that feeds them is.
//!
//! The workbook's bytes are read once and held (they are what `plan_sha256` covers, and a
//! file read in two goes could change in between); before calamine sees them, the archive is
//! checked: it must be a zip archive, and no part may inflate past [`MAX_PART_BYTES`] (counted
//! while inflating, not taken from the sizes the archive declares, which a zip bomb can lie
//! about), nor a part calamine holds whole (shared strings, an ODS sheet) past
//! [`MAX_HELD_PART_BYTES`].
//!
//! An xlsx sheet is streamed cell by cell; an ODS sheet is read whole by calamine, which has
//! no streaming reader for it. The cells are read on a thread of their own and handed over in
//! rows through a bounded channel, since calamine's cell reader borrows its workbook and so
//! cannot live in an iterator beside it.

use std::borrow::Cow;
use std::io::{self, Cursor, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use calamine::{Data, DataRef, Ods, Reader, Xlsx};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader as XmlReader;
use sha2::{Digest, Sha256};

use super::checks::Tracker;
use super::error::{PlanError, PlanErrors, Problems};
use super::header::{self, Header};
use super::records;
use super::row::PlanRow;
use super::scan::{MAX_COLUMNS, MAX_PROBLEMS, Stage};

/// The largest workbook file read. It is held in memory while it is read; a workbook of a
/// million plan rows is a few tens of MiB.
pub const MAX_WORKBOOK_BYTES: u64 = 256 * 1024 * 1024;

/// The most bytes any one part of a workbook may inflate to. calamine streams an xlsx sheet,
/// so this bounds the time a zip bomb costs; a million plan rows take about 300 MiB of sheet
/// XML.
pub const MAX_PART_BYTES: u64 = 1024 * 1024 * 1024;

/// The most bytes a part that calamine reads whole may inflate to: an xlsx's shared strings
/// and styles, an ODS's content (its sheets).
pub const MAX_HELD_PART_BYTES: u64 = 256 * 1024 * 1024;

/// The most columns a sheet row is read to; beyond the header's width cells are refused
/// anyway, so a cell far to the right only needs to be seen, not kept.
const MAX_SHEET_COLUMNS: usize = 16_384;

/// Rows handed over from the reading thread at a time, at most.
const CHANNEL_ROWS: usize = 1024;

/// The spreadsheet formats a plan may be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Xlsx,
    Ods,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Xlsx => "an .xlsx workbook",
            Format::Ods => "an .ods spreadsheet",
        }
    }
}

/// The spreadsheet format the name of `path` says, if it is one.
pub(super) fn format_of(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "xlsx" | "xlsm" => Some(Format::Xlsx),
        "ods" => Some(Format::Ods),
        _ => None,
    }
}

/// The name a plan read from `path` goes by in messages: the file, and the sheet when one was
/// asked for (`plan.xlsx[Sheet2]`).
pub(super) fn display_name(path: &Path, sheet: Option<&str>) -> String {
    match sheet {
        Some(s) => format!("{}[{s}]", path.display()),
        None => path.display().to_string(),
    }
}

/// One row of a sheet: its number as the spreadsheet shows it, its cells' texts, and the
/// cells that cannot be read as text (column index, why).
#[derive(Debug, Default, PartialEq)]
pub(super) struct SheetRecord {
    pub(super) row: u64,
    pub(super) fields: Vec<String>,
    pub(super) bad: Vec<(usize, String)>,
}

/// What the reading thread hands over.
enum Msg {
    Record(SheetRecord),
    /// The workbook or sheet cannot be read; nothing after it comes.
    Fatal(String),
}

/// A workbook read into memory and checked, ready to be read.
struct Workbook {
    bytes: Arc<[u8]>,
    /// Whether a worksheet may hold a formula.
    formulas: bool,
    sha256: String,
    format: Format,
}

fn refusal(file: &str, message: String) -> PlanErrors {
    PlanErrors(vec![PlanError {
        file: file.to_string(),
        line: 0,
        message,
    }])
}

/// Reads the workbook at `path` (named `file` in messages) and checks it before calamine sees
/// it.
fn open_workbook(path: &Path, file: &str, format: Format) -> Result<Workbook, PlanErrors> {
    let refuse = |m: String| refusal(file, m);
    let handle = super::scan::open_plan_file(path, file)?;
    let mut bytes = Vec::new();
    // One more byte than the limit shows a file past it without reading all of it.
    handle
        .take(MAX_WORKBOOK_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("cannot read the plan: {e}")))?;
    if bytes.len() as u64 > MAX_WORKBOOK_BYTES {
        return Err(refuse(format!(
            "the workbook is larger than {} MiB; split the plan",
            MAX_WORKBOOK_BYTES / (1024 * 1024)
        )));
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let formulas = inspect(&bytes, format).map_err(refuse)?;
    Ok(Workbook {
        bytes: bytes.into(),
        formulas,
        sha256,
        format,
    })
}

/// Refuses bytes that are not a sound workbook of `format`: not a zip archive (an encrypted
/// workbook is an OLE file, a CSV renamed is text), a corrupt or truncated archive, or a part
/// that inflates past its limit.
///
/// Returns whether a worksheet may hold a formula (a false yes costs memory, never a wrong
/// reading): only then is a sheet read a second time for its formulas.
pub(super) fn inspect(bytes: &[u8], format: Format) -> Result<bool, String> {
    inspect_within(bytes, format, MAX_PART_BYTES, MAX_HELD_PART_BYTES)
}

/// [`inspect`] with the limits given, for the tests, which cannot inflate a GiB.
fn inspect_within(
    bytes: &[u8],
    format: Format,
    max_part: u64,
    max_held_part: u64,
) -> Result<bool, String> {
    const OLE: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";
    if bytes.starts_with(OLE) {
        return Err(format!(
            "not {}: the file is encrypted (password-protected) or an Excel 97-2003 workbook; \
             save it without a password as .xlsx, .ods or CSV",
            format.name()
        ));
    }
    if !bytes.starts_with(b"PK\x03\x04") {
        return Err(format!(
            "not {}: its content is not a zip archive, as a workbook is (a CSV file with a \
             spreadsheet's name?)",
            format.name()
        ));
    }
    let corrupt = |e: &dyn std::fmt::Display| {
        format!("the workbook is corrupt or truncated ({e}); save it again")
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt(&e))?;
    let mut formulas = false;
    for i in 0..zip.len() {
        let mut part = zip.by_index(i).map_err(|e| corrupt(&e))?;
        if part.encrypted() {
            return Err("the workbook is encrypted; save it without a password".into());
        }
        let name = part.name().to_string();
        // calamine streams xlsx sheets; everything else it reads whole.
        let streamed = format == Format::Xlsx && name.starts_with("xl/worksheets/");
        let limit = if streamed { max_part } else { max_held_part };
        // Counted while inflating: the sizes an archive declares may lie.
        let mut seen = FormulaSeen::default();
        let inflated =
            io::copy(&mut (&mut part).take(limit + 1), &mut seen).map_err(|e| corrupt(&e))?;
        formulas |= streamed && seen.found;
        if inflated > limit {
            return Err(format!(
                "the workbook's part {} inflates to more than {} MiB, more than any plan needs; \
                 refused",
                crate::text::clip(&name, 200),
                limit.div_ceil(1024 * 1024)
            ));
        }
    }
    Ok(formulas)
}

/// How many hidden rows the sheet `wanted` (or the first) of a checked workbook has. calamine
/// reads hidden rows like any other and does not say which they are, so the sheet's XML is
/// read again for them: a reviewer who sees a count knows there are rows the spreadsheet did
/// not show.
///
/// A hidden row is counted whether or not it has cells, as the spreadsheet would show it when
/// unhidden.
pub(super) fn hidden_rows(
    bytes: &[u8],
    format: Format,
    wanted: Option<&str>,
) -> Result<u64, String> {
    let why = |e: &dyn std::fmt::Display| format!("cannot count the sheet's hidden rows ({e})");
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| why(&e))?;
    match format {
        Format::Xlsx => {
            let part = xlsx_sheet_part(&mut zip, wanted)?;
            let sheet = zip.by_name(&part).map_err(|e| why(&e))?;
            // The part was inflated and measured by `inspect`; the bound holds again here in
            // case the archive differs from what it declares.
            xlsx_hidden_rows(io::BufReader::new(sheet.take(MAX_PART_BYTES + 1)))
                .map_err(|e| why(&e))
        }
        Format::Ods => {
            let content = zip.by_name("content.xml").map_err(|e| why(&e))?;
            ods_hidden_rows(
                io::BufReader::new(content.take(MAX_HELD_PART_BYTES + 1)),
                wanted,
            )
            .map_err(|e| why(&e))
        }
    }
}

/// The value of the attribute whose local name (without its prefix) is `name`.
fn attribute(start: &BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        if attr.key.local_name().as_ref() == name {
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// The path in the archive of the worksheet `wanted` (or the first sheet): its relationship
/// id from `xl/workbook.xml`, its target from `xl/_rels/workbook.xml.rels`.
fn xlsx_sheet_part<R: Read + io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    wanted: Option<&str>,
) -> Result<String, String> {
    let why = |e: &dyn std::fmt::Display| format!("cannot count the sheet's hidden rows ({e})");
    let mut id = None;
    {
        let part = zip.by_name("xl/workbook.xml").map_err(|e| why(&e))?;
        let mut reader =
            XmlReader::from_reader(io::BufReader::new(part.take(MAX_HELD_PART_BYTES + 1)));
        let mut buf = Vec::new();
        loop {
            match reader.read_event_into(&mut buf).map_err(|e| why(&e))? {
                Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "sheet" => {
                    let name = attribute(&e, "name").map_err(|e| why(&e))?;
                    if wanted.is_none() || name.as_deref() == wanted {
                        id = attribute(&e, "id").map_err(|e| why(&e))?;
                        break;
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
    }
    let id = id.ok_or_else(|| why(&"the sheet is not in xl/workbook.xml"))?;
    let part = zip
        .by_name("xl/_rels/workbook.xml.rels")
        .map_err(|e| why(&e))?;
    let mut reader = XmlReader::from_reader(io::BufReader::new(part.take(MAX_HELD_PART_BYTES + 1)));
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).map_err(|e| why(&e))? {
            Event::Start(e) | Event::Empty(e)
                if e.local_name().as_ref() == "Relationship"
                    && attribute(&e, "Id").map_err(|e| why(&e))?.as_deref()
                        == Some(id.as_str()) =>
            {
                let target = attribute(&e, "Target")
                    .map_err(|e| why(&e))?
                    .ok_or_else(|| why(&"a relationship without a target"))?;
                return Ok(part_path(&target));
            }
            Event::Eof => {
                return Err(why(
                    &"the sheet's part is not in xl/_rels/workbook.xml.rels",
                ));
            }
            _ => {}
        }
        buf.clear();
    }
}

/// A relationship target of the workbook as a path in the archive: absolute (`/xl/..`), or
/// relative to `xl/`, with `..` resolved.
fn part_path(target: &str) -> String {
    let joined = match target.strip_prefix('/') {
        Some(absolute) => absolute.to_string(),
        None => format!("xl/{target}"),
    };
    let mut parts: Vec<&str> = Vec::new();
    for segment in joined.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// Counts the `<row>` elements of a worksheet's XML marked `hidden`.
fn xlsx_hidden_rows<R: io::BufRead>(xml: R) -> Result<u64, String> {
    let mut reader = XmlReader::from_reader(xml);
    let mut buf = Vec::new();
    let mut hidden = 0;
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| e.to_string())?
        {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "row" => {
                // xsd:boolean: `1` or `true`.
                if matches!(attribute(&e, "hidden")?.as_deref(), Some("1" | "true")) {
                    hidden += 1;
                }
            }
            Event::Eof => return Ok(hidden),
            _ => {}
        }
        buf.clear();
    }
}

/// Counts the hidden rows (`table:visibility` `collapsed` or `filter`) of the table `wanted`
/// (or the first) in an ODS's `content.xml`; a hidden row repeated counts as many rows.
fn ods_hidden_rows<R: io::BufRead>(xml: R, wanted: Option<&str>) -> Result<u64, String> {
    let mut reader = XmlReader::from_reader(xml);
    let mut buf = Vec::new();
    let mut hidden: u64 = 0;
    // Tables open inside the chosen one (a table in a cell), 0 outside it: only the chosen
    // table's own end ends the count.
    let mut depth = 0usize;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| e.to_string())?;
        match event {
            Event::Start(e) if e.local_name().as_ref() == "table" => {
                if depth > 0 {
                    depth += 1;
                } else if wanted.is_none() || attribute(&e, "name")?.as_deref() == wanted {
                    depth = 1;
                }
            }
            Event::End(e) if depth > 0 && e.local_name().as_ref() == "table" => {
                depth -= 1;
                if depth == 0 {
                    return Ok(hidden);
                }
            }
            Event::Start(e) | Event::Empty(e)
                if depth == 1 && e.local_name().as_ref() == "table-row" =>
            {
                if matches!(
                    attribute(&e, "visibility")?.as_deref(),
                    Some("collapsed" | "filter")
                ) {
                    let repeated = match attribute(&e, "number-rows-repeated")? {
                        Some(n) => n
                            .trim()
                            .parse::<u64>()
                            .map_err(|_| format!("a row repeated {n:?} times"))?,
                        None => 1,
                    };
                    hidden = hidden.saturating_add(repeated);
                }
            }
            Event::Eof => return Ok(hidden),
            _ => {}
        }
        buf.clear();
    }
}

/// A sink that notes whether the XML written to it has an `<f>` element (a formula), with or
/// without a namespace prefix (`<x:f>`), across the chunks it is written in.
#[derive(Default)]
struct FormulaSeen {
    found: bool,
    /// The last two bytes of the previous chunk.
    tail: [u8; 2],
}

impl io::Write for FormulaSeen {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.found {
            let mut prev = self.tail;
            for &b in buf {
                if matches!(b, b'>' | b' ' | b'/')
                    && prev[1] == b'f'
                    && matches!(prev[0], b'<' | b':')
                {
                    self.found = true;
                    break;
                }
                prev = [prev[1], b];
            }
            self.tail = prev;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Text for one cell, as the spreadsheet shows it; `Err` with why when a plan cell cannot be
/// read from it. `formula` is the cell's formula, empty when it has none.
pub(super) fn cell_text(value: &DataRef<'_>, formula: &str) -> Result<String, String> {
    Ok(match value {
        // A program that writes formulas without computing them leaves the value out or
        // empty (LibreOffice's "recalculate on load"); an empty text is read as no value, since
        // a plan cell that a formula leaves blank is a mistake more often than an intent.
        DataRef::Empty | DataRef::String(_) | DataRef::SharedString(_)
            if !formula.trim().is_empty() && value_is_empty(value) =>
        {
            return Err(format!(
                "the formula ={} has no saved value; open the workbook in a spreadsheet program \
                 and save it, so that its formulas are calculated",
                crate::text::clip(formula, 80)
            ));
        }
        DataRef::Empty => String::new(),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_string(),
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => number_text(*f),
        DataRef::Bool(true) => "TRUE".into(),
        DataRef::Bool(false) => "FALSE".into(),
        DataRef::DateTime(_) | DataRef::DateTimeIso(_) | DataRef::DurationIso(_) => {
            return Err(
                "a date or time cell: plan cells are text; format the column as Text".into(),
            );
        }
        DataRef::Error(e) => return Err(format!("the cell shows the error {e}")),
    })
}

fn value_is_empty(value: &DataRef<'_>) -> bool {
    match value {
        DataRef::Empty => true,
        DataRef::String(s) => s.is_empty(),
        DataRef::SharedString(s) => s.is_empty(),
        _ => false,
    }
}

/// A number as a spreadsheet shows it in a General cell: an integer without `.0` (sheets store
/// every number as a float), anything else in its shortest exact form.
pub(super) fn number_text(f: f64) -> String {
    // 2^53: past it a float no longer holds every integer, and `as i64` would invent digits.
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        // `as` turns -0.0 into 0, as a sheet shows it.
        (f as i64).to_string()
    } else {
        f.to_string()
    }
}

/// An ODS cell as the xlsx reader gives cells, so that both go through [`cell_text`].
fn data_ref(d: &Data) -> DataRef<'_> {
    match d {
        Data::Int(i) => DataRef::Int(*i),
        Data::Float(f) => DataRef::Float(*f),
        Data::String(s) => DataRef::SharedString(s),
        Data::Bool(b) => DataRef::Bool(*b),
        Data::DateTime(d) => DataRef::DateTime(*d),
        Data::DateTimeIso(s) => DataRef::DateTimeIso(s.clone()),
        Data::DurationIso(s) => DataRef::DurationIso(s.clone()),
        Data::Error(e) => DataRef::Error(e.clone()),
        Data::Empty => DataRef::Empty,
    }
}

/// Gathers cells, which come in row order, into rows and hands each row over.
struct RowBuilder {
    tx: SyncSender<Msg>,
    current: SheetRecord,
}

/// The reader on the other side went away: the reading stops.
struct Gone;

impl RowBuilder {
    fn push(&mut self, row: u32, col: u32, text: Result<String, String>) -> Result<(), Gone> {
        let row = u64::from(row) + 1;
        if row != self.current.row {
            self.flush()?;
            self.current.row = row;
        }
        let col = col as usize;
        match text {
            Ok(t) if t.is_empty() => {}
            _ if col >= MAX_SHEET_COLUMNS => {}
            Ok(t) => {
                if self.current.fields.len() <= col {
                    self.current.fields.resize(col + 1, String::new());
                }
                self.current.fields[col] = t;
            }
            Err(why) => self.current.bad.push((col, why)),
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Gone> {
        let done = std::mem::take(&mut self.current);
        if done.fields.is_empty() && done.bad.is_empty() {
            return Ok(());
        }
        self.tx.send(Msg::Record(done)).map_err(|_| Gone)
    }
}

/// The sheet to read: `wanted`, or the first.
fn pick(names: &[String], wanted: Option<&str>) -> Result<String, String> {
    match wanted {
        Some(w) if names.iter().any(|n| n == w) => Ok(w.to_string()),
        Some(w) => Err(format!(
            "the workbook has no sheet named {}; its sheets: {}",
            super::cells::quoted(w),
            names
                .iter()
                .map(|n| super::cells::quoted(n))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| "the workbook has no sheets".to_string()),
    }
}

fn read_xlsx(
    bytes: &[u8],
    sheet: Option<&str>,
    formulas: bool,
    rows: &mut RowBuilder,
) -> Result<(), String> {
    let unreadable = |e: calamine::XlsxError| match e {
        calamine::XlsxError::Password => {
            "the workbook is encrypted; save it without a password".to_string()
        }
        e => format!("cannot read the workbook as .xlsx: {e}"),
    };
    // Two readers over the same bytes in step: calamine gives a cell's value and its formula
    // in separate passes, and a formula without a saved value shows only in both. The second
    // holds its own copy of the shared strings, so it is opened only when a sheet has a
    // formula.
    let mut values: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(unreadable)?;
    let name = pick(&values.sheet_names(), sheet)?;
    let mut second: Option<Xlsx<_>> = if formulas {
        Some(Xlsx::new(Cursor::new(bytes)).map_err(unreadable)?)
    } else {
        None
    };
    let mut values = values.worksheet_cells_reader(&name).map_err(unreadable)?;
    let mut formulas = match &mut second {
        Some(book) => Some(book.worksheet_cells_reader(&name).map_err(unreadable)?),
        None => None,
    };
    while let Some(cell) = values.next_cell().map_err(unreadable)? {
        let formula = match &mut formulas {
            Some(f) => f.next_formula().map_err(unreadable)?,
            None => None,
        };
        let formula = formula.as_ref().map_or("", |f| f.get_value().as_str());
        let (row, col) = cell.get_position();
        if rows
            .push(row, col, cell_text(cell.get_value(), formula))
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

fn read_ods(bytes: &[u8], sheet: Option<&str>, rows: &mut RowBuilder) -> Result<(), String> {
    let unreadable = |e: calamine::OdsError| match e {
        calamine::OdsError::Password => {
            "the spreadsheet is encrypted; save it without a password".to_string()
        }
        e => format!("cannot read the spreadsheet as .ods: {e}"),
    };
    let mut book: Ods<_> = Ods::new(Cursor::new(bytes)).map_err(unreadable)?;
    let name = pick(&book.sheet_names(), sheet)?;
    let values = book.worksheet_range(&name).map_err(unreadable)?;
    let formulas = book.worksheet_formula(&name).map_err(unreadable)?;
    let (top, left) = values.start().unwrap_or((0, 0));
    for (r, c, value) in values.used_cells() {
        let at = (top + r as u32, left + c as u32);
        let formula = formulas.get_value(at).map_or("", String::as_str);
        if rows
            .push(at.0, at.1, cell_text(&data_ref(value), formula))
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

/// Starts reading `sheet` (or the first) of a checked workbook on a thread of its own.
fn spawn(book: &Workbook, sheet: Option<String>) -> Receiver<Msg> {
    let (tx, rx) = sync_channel(CHANNEL_ROWS);
    let bytes = Arc::clone(&book.bytes);
    let format = book.format;
    let formulas = book.formulas;
    std::thread::spawn(move || {
        let mut rows = RowBuilder {
            tx: tx.clone(),
            current: SheetRecord::default(),
        };
        let read = match format {
            Format::Xlsx => read_xlsx(&bytes, sheet.as_deref(), formulas, &mut rows),
            Format::Ods => read_ods(&bytes, sheet.as_deref(), &mut rows),
        };
        match read {
            Ok(()) => {
                let _ = rows.flush();
            }
            Err(m) => {
                let _ = tx.send(Msg::Fatal(m));
            }
        }
    });
    rx
}

/// Reads a sheet's records and validates each row as it comes: the spreadsheet counterpart of
/// the CSV `Scanner`, feeding the same header and checks.
pub(super) struct SheetScanner {
    rx: Receiver<Msg>,
    pub(super) problems: Problems,
    tracker: Option<Tracker>,
    stop_at_problem: bool,
    stage: Stage,
    header: Option<Header>,
    records_seen: u64,
    /// The SHA-256 of the workbook's bytes.
    pub(super) sha256: String,
    /// The workbook's bytes, for [`SheetScanner::hidden_rows`].
    bytes: Arc<[u8]>,
    format: Format,
}

impl SheetScanner {
    /// Opens the workbook at `path` and starts reading `sheet` (or its first). `file` is the
    /// name messages give (with the sheet, when asked for).
    pub(super) fn open(
        path: &Path,
        file: &str,
        format: Format,
        sheet: Option<&str>,
        tracker: Option<Tracker>,
        stop_at_problem: bool,
    ) -> Result<SheetScanner, PlanErrors> {
        let book = open_workbook(path, file, format)?;
        Ok(SheetScanner {
            rx: spawn(&book, sheet.map(str::to_string)),
            problems: Problems {
                file: file.to_string(),
                list: Vec::new(),
            },
            tracker,
            stop_at_problem,
            stage: Stage::Start,
            header: None,
            records_seen: 0,
            bytes: Arc::clone(&book.bytes),
            format: book.format,
            sha256: book.sha256,
        })
    }

    /// How many hidden rows the sheet `sheet` (or the first) has; see [`hidden_rows`]. Asked
    /// for only by `check`, so that reading the rows again does not read the sheet twice.
    pub(super) fn hidden_rows(&self, sheet: Option<&str>) -> Result<u64, PlanErrors> {
        hidden_rows(&self.bytes, self.format, sheet).map_err(|m| refusal(&self.problems.file, m))
    }

    /// The next valid row; `None` at the end or, when stopping at the first problem, at it.
    pub(super) fn next_row(&mut self) -> Option<PlanRow> {
        loop {
            if self.stop_at_problem && !self.problems.list.is_empty() {
                self.stage = Stage::Done;
            }
            if self.stage != Stage::Done && self.problems.list.len() >= MAX_PROBLEMS {
                let line = self.problems.list.last().map_or(0, |p| p.line);
                self.problems.add(
                    line,
                    format!(
                        "more than {MAX_PROBLEMS} problems: reading stopped here; fix these first"
                    ),
                );
                self.stage = Stage::Done;
            }
            if self.stage == Stage::Done {
                return None;
            }
            let record = match self.rx.recv() {
                Ok(Msg::Record(r)) => r,
                Ok(Msg::Fatal(m)) => {
                    self.problems.add(0, m);
                    self.stage = Stage::Done;
                    continue;
                }
                Err(_) => {
                    self.end();
                    continue;
                }
            };
            if let Some(row) = self.record(record) {
                return Some(row);
            }
        }
    }

    /// The sheet is read to its end.
    fn end(&mut self) {
        self.stage = match self.stage {
            Stage::Start => {
                self.problems
                    .add(0, "the plan has no rows: the sheet is empty".into());
                Stage::Done
            }
            _ => {
                if self.records_seen == 0 {
                    self.problems.add(0, "the plan has no rows".into());
                }
                let problems = &mut self.problems;
                if let Some(tracker) = &mut self.tracker {
                    tracker.finish(&mut |line, m| problems.add(line, m));
                }
                Stage::Done
            }
        };
    }

    /// Reads one record: the header, or a row through it.
    fn record(&mut self, record: SheetRecord) -> Option<PlanRow> {
        let fields: Vec<Cow<'_, str>> = record
            .fields
            .iter()
            .map(|f| Cow::from(f.as_str()))
            .collect();
        if record.bad.is_empty() && records::is_blank(&fields) {
            return None;
        }
        for (col, why) in &record.bad {
            let name = self
                .header
                .as_ref()
                .and_then(|h| h.column_name(*col))
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            self.problems.add(
                record.row,
                format!("column {}{name}: {why}", column_letters(*col)),
            );
        }
        let Some(header) = &self.header else {
            if !record.bad.is_empty() {
                self.stage = Stage::Done;
                return None;
            }
            let width = header::header_width(&fields);
            if width > MAX_COLUMNS {
                self.problems.add(
                    record.row,
                    format!(
                        "the header has {width} columns, more than the {MAX_COLUMNS} a plan may \
                         have; is this a plan? reading stopped here"
                    ),
                );
                self.stage = Stage::Done;
                return None;
            }
            self.header = Some(Header::read(
                &fields,
                record.row,
                header::SHEET,
                &mut self.problems,
            ));
            self.stage = Stage::Rows;
            return None;
        };
        self.records_seen += 1;
        if !record.bad.is_empty() {
            return None;
        }
        header.row(
            record.row,
            &fields,
            self.tracker.as_mut(),
            &mut self.problems,
        )
    }
}

/// A column's letters as a spreadsheet shows them (0 → `A`, 26 → `AA`).
pub(super) fn column_letters(col: usize) -> String {
    let mut n = col + 1;
    let mut letters = Vec::new();
    while n > 0 {
        let r = (n - 1) % 26;
        letters.push(b'A' + r as u8);
        n = (n - 1) / 26;
    }
    letters.reverse();
    String::from_utf8(letters).expect("ASCII letters")
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{CellErrorType, ExcelDateTime, ExcelDateTimeType};

    #[test]
    fn numbers_read_as_a_sheet_shows_them() {
        assert_eq!(cell_text(&DataRef::Float(42.0), ""), Ok("42".into()));
        assert_eq!(cell_text(&DataRef::Float(-0.0), ""), Ok("0".into()));
        assert_eq!(cell_text(&DataRef::Float(1.5), ""), Ok("1.5".into()));
        assert_eq!(cell_text(&DataRef::Float(0.1), ""), Ok("0.1".into()));
        assert_eq!(cell_text(&DataRef::Int(7), ""), Ok("7".into()));
        assert_eq!(
            cell_text(&DataRef::Float(123_456_789_012.0), ""),
            Ok("123456789012".into())
        );
        assert_eq!(cell_text(&DataRef::Bool(true), ""), Ok("TRUE".into()));
    }

    #[test]
    fn text_and_empty_cells() {
        assert_eq!(
            cell_text(&DataRef::SharedString("TECH\\alice"), ""),
            Ok("TECH\\alice".into())
        );
        assert_eq!(cell_text(&DataRef::String("x".into()), ""), Ok("x".into()));
        assert_eq!(cell_text(&DataRef::Empty, ""), Ok(String::new()));
    }

    #[test]
    fn dates_and_error_cells_are_refused() {
        let date = ExcelDateTime::new(45000.0, ExcelDateTimeType::DateTime, false);
        let e = cell_text(&DataRef::DateTime(date), "").unwrap_err();
        assert!(e.contains("date or time"), "{e}");
        assert!(cell_text(&DataRef::DateTimeIso("2026-01-01".into()), "").is_err());
        assert!(cell_text(&DataRef::DurationIso("PT1H".into()), "").is_err());
        let e = cell_text(&DataRef::Error(CellErrorType::NA), "").unwrap_err();
        assert!(e.contains("#N/A"), "{e}");
    }

    #[test]
    fn a_formula_is_read_by_its_saved_value_and_refused_without_one() {
        assert_eq!(
            cell_text(&DataRef::SharedString("Portal User"), "A1&\"\""),
            Ok("Portal User".into())
        );
        assert_eq!(cell_text(&DataRef::Float(3.0), "1+2"), Ok("3".into()));
        let e = cell_text(&DataRef::Empty, "B2&C2").unwrap_err();
        assert!(e.contains("=B2&C2 has no saved value"), "{e}");
        assert!(cell_text(&DataRef::String(String::new()), "B2&C2").is_err());
    }

    #[test]
    fn columns_are_named_by_their_letters() {
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(701), "ZZ");
        assert_eq!(column_letters(702), "AAA");
    }

    #[test]
    fn only_workbooks_are_read_as_workbooks() {
        let e = inspect(b"account,action,target\n", Format::Xlsx).unwrap_err();
        assert!(e.contains("not a zip archive"), "{e}");
        let e = inspect(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1rest", Format::Xlsx).unwrap_err();
        assert!(e.contains("encrypted"), "{e}");
        let e = inspect(b"PK\x03\x04truncated", Format::Ods).unwrap_err();
        assert!(e.contains("corrupt or truncated"), "{e}");
    }

    #[test]
    fn formulas_are_seen_across_chunks_with_or_without_a_prefix() {
        use std::io::Write;
        let seen = |chunks: &[&[u8]]| {
            let mut s = FormulaSeen::default();
            for c in chunks {
                s.write_all(c).unwrap();
            }
            s.found
        };
        assert!(seen(&[b"<c r=\"A1\"><f>A2</f><v>1</v></c>"]));
        assert!(seen(&[b"<c><", b"f", b" t=\"shared\"/></c>"]));
        assert!(seen(&[b"<x:c><x:f>1+1</x:f></x:c>"]));
        assert!(!seen(&[b"<c r=\"A1\" t=\"s\"><v>1</v></c><font/>"]));
    }

    fn xlsx_with(rows: u32) -> Vec<u8> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        for r in 0..rows {
            sheet.write_string(r, 0, format!("TECH\\user{r}")).unwrap();
        }
        book.save_to_buffer().unwrap()
    }

    #[test]
    fn a_part_that_inflates_past_its_limit_is_refused() {
        let book = xlsx_with(20_000);
        assert_eq!(inspect(&book, Format::Xlsx), Ok(false));
        // The sheet is streamed and gets the larger limit; the shared strings are held whole.
        let e = inspect_within(&book, Format::Xlsx, 64 * 1024, 1 << 30).unwrap_err();
        assert!(
            e.contains("part xl/worksheets/sheet1.xml inflates to more than"),
            "{e}"
        );
        let e = inspect_within(&book, Format::Xlsx, 1 << 30, 64 * 1024).unwrap_err();
        assert!(e.contains("part xl/sharedStrings.xml"), "{e}");
    }

    /// A minimal ODS file: its mimetype, manifest and `content` as the rows of one table.
    fn ods_with(rows: &str) -> Vec<u8> {
        use std::io::Write;
        use zip::write::SimpleFileOptions;
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("mimetype", stored).unwrap();
        zip.write_all(b"application/vnd.oasis.opendocument.spreadsheet")
            .unwrap();
        zip.start_file("META-INF/manifest.xml", SimpleFileOptions::default())
            .unwrap();
        zip.write_all(
            br#"<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#,
        )
        .unwrap();
        zip.start_file("content.xml", SimpleFileOptions::default())
            .unwrap();
        write!(
            zip,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet><table:table table:name="Plan">{rows}</table:table></office:spreadsheet></office:body></office:document-content>"#
        )
        .unwrap();
        zip.finish().unwrap().into_inner()
    }

    fn text(t: &str) -> String {
        format!(
            r#"<table:table-cell office:value-type="string"><text:p>{t}</text:p></table:table-cell>"#
        )
    }

    #[test]
    fn an_ods_plan_is_read_as_shown_with_its_row_numbers() {
        let header = format!(
            "<table:table-row>{}{}{}{}</table:table-row>",
            text("account"),
            text("action"),
            text("target"),
            text("ticket")
        );
        let good = format!(
            "<table:table-row>{}{}{}<table:table-cell office:value-type=\"float\" office:value=\"2041\"><text:p>2041</text:p></table:table-cell></table:table-row>",
            text("TECH\\alice"),
            text("assign-role"),
            text("Portal User")
        );
        let blank = "<table:table-row><table:table-cell/></table:table-row>";
        let formula = format!(
            "<table:table-row>{}{}<table:table-cell table:formula=\"of:=LOWER(&quot;ON&quot;)\" office:value-type=\"string\" office:string-value=\"on\"><text:p>on</text:p></table:table-cell></table:table-row>",
            text("TECH\\bob"),
            text("restore-all-vms")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.ods");
        std::fs::write(&path, ods_with(&format!("{header}{good}{blank}{formula}"))).unwrap();
        let plan = crate::plan::load_sheet(&path, None).unwrap();
        let lines: Vec<u64> = plan.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 4]);
        assert_eq!(plan.rows[0].ticket.as_deref(), Some("2041"));

        let date = format!(
            "<table:table-row>{}{}<table:table-cell office:value-type=\"date\" office:date-value=\"2026-05-31\"><text:p>2026-05-31</text:p></table:table-cell></table:table-row>",
            text("TECH\\carol"),
            text("assign-role")
        );
        std::fs::write(&path, ods_with(&format!("{header}{good}{date}"))).unwrap();
        let err = crate::plan::load_sheet(&path, Some("Plan"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("plan.ods[Plan]:3: column C (target): a date or time cell"),
            "{err}"
        );
    }

    /// A minimal xlsx archive: two sheets (`Plan` and `Other`, the second's part named by an
    /// absolute target), each with the XML given for its rows.
    fn xlsx_parts(plan_rows: &str, other_rows: &str) -> Vec<u8> {
        use std::io::Write;
        use zip::write::SimpleFileOptions;
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = SimpleFileOptions::default();
        zip.start_file("xl/workbook.xml", o).unwrap();
        zip.write_all(
            br#"<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Plan" sheetId="1" r:id="rId2"/><sheet name="Other" sheetId="2" r:id="rId1"/></sheets></workbook>"#,
        )
        .unwrap();
        zip.start_file("xl/_rels/workbook.xml.rels", o).unwrap();
        zip.write_all(
            br#"<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="worksheet" Target="/xl/worksheets/sheet9.xml"/><Relationship Id="rId2" Type="worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
        )
        .unwrap();
        for (name, rows) in [("sheet1", plan_rows), ("sheet9", other_rows)] {
            zip.start_file(format!("xl/worksheets/{name}.xml"), o)
                .unwrap();
            write!(
                zip,
                r#"<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{rows}</sheetData></worksheet>"#
            )
            .unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn hidden_xlsx_rows_are_counted_in_the_sheet_read() {
        let book = xlsx_parts(
            r#"<row r="1"><c r="A1"><v>1</v></c></row><row r="2" hidden="1"><c r="A2"><v>2</v></c></row><row r="3" hidden="0"/><row r="4" hidden="true"/>"#,
            r#"<row r="1" hidden="1"/><row r="2" spans="1:1" hidden="1"/><row r="3" hidden="1"/>"#,
        );
        assert_eq!(hidden_rows(&book, Format::Xlsx, None), Ok(2));
        assert_eq!(hidden_rows(&book, Format::Xlsx, Some("Plan")), Ok(2));
        assert_eq!(hidden_rows(&book, Format::Xlsx, Some("Other")), Ok(3));
        let plain = xlsx_parts(r#"<row r="1"/>"#, "");
        assert_eq!(hidden_rows(&plain, Format::Xlsx, None), Ok(0));
        // A real workbook, as a spreadsheet program writes it.
        assert_eq!(hidden_rows(&xlsx_with(3), Format::Xlsx, None), Ok(0));
    }

    #[test]
    fn workbook_targets_become_archive_paths() {
        assert_eq!(
            part_path("worksheets/sheet1.xml"),
            "xl/worksheets/sheet1.xml"
        );
        assert_eq!(part_path("/xl/worksheets/s.xml"), "xl/worksheets/s.xml");
        assert_eq!(part_path("../xl/worksheets/s.xml"), "xl/worksheets/s.xml");
    }

    #[test]
    fn hidden_ods_rows_are_counted_with_their_repeats() {
        let rows = format!(
            "<table:table-row>{a}</table:table-row>\
             <table:table-row table:visibility=\"collapsed\">{a}</table:table-row>\
             <table:table-row-group><table:table-row table:visibility=\"filter\" table:number-rows-repeated=\"3\">{a}</table:table-row></table:table-row-group>\
             <table:table-row table:visibility=\"visible\">{a}</table:table-row>",
            a = text("x")
        );
        let book = ods_with(&rows);
        assert_eq!(hidden_rows(&book, Format::Ods, None), Ok(4));
        assert_eq!(hidden_rows(&book, Format::Ods, Some("Plan")), Ok(4));
        let header = format!(
            "<table:table-row>{}{}{}</table:table-row>",
            text("account"),
            text("action"),
            text("target")
        );
        let row = format!(
            "<table:table-row table:visibility=\"collapsed\">{}{}{}</table:table-row>",
            text("TECH\\alice"),
            text("assign-role"),
            text("Portal User")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.ods");
        std::fs::write(&path, ods_with(&format!("{header}{row}"))).unwrap();
        let plan = crate::plan::check_sheet(&path, None).unwrap();
        assert_eq!((plan.rows, plan.hidden_rows), (1, 1));
        // Another table's hidden rows are not the chosen one's.
        let xml = format!(
            r#"<office:document-content xmlns:office="o" xmlns:table="t"><table:table table:name="A"><table:table-row table:visibility="collapsed"/></table:table><table:table table:name="B">{rows}</table:table></office:document-content>"#
        );
        assert_eq!(ods_hidden_rows(xml.as_bytes(), None), Ok(1));
        assert_eq!(ods_hidden_rows(xml.as_bytes(), Some("B")), Ok(4));
        assert_eq!(ods_hidden_rows(ods_content_plain().as_bytes(), None), Ok(0));
    }

    fn ods_content_plain() -> String {
        r#"<office:document-content xmlns:office="o" xmlns:table="t"><table:table table:name="A"><table:table-row/></table:table></office:document-content>"#.to_string()
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(format_of(Path::new("a.XLSX")), Some(Format::Xlsx));
        assert_eq!(format_of(Path::new("a.xlsm")), Some(Format::Xlsx));
        assert_eq!(format_of(Path::new("a.ods")), Some(Format::Ods));
        assert_eq!(format_of(Path::new("a.csv")), None);
    }
}
